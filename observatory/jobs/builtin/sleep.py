from __future__ import annotations

import random
import time

from pydantic import BaseModel, Field

from contracts import Resources
from observatory.errors import JobFailed
from observatory.jobs.registry import job_type


class SleepPayload(BaseModel):
    seconds: float = Field(default=1.0, ge=0, le=300)
    fail_probability: float = Field(default=0.0, ge=0, le=1)


@job_type(
    "sleep",
    SleepPayload,
    "Simulated work: sleep, then fail with the given probability.",
    resources=Resources(cpus=0.1),  # it waits: a tenth of a core lets ten share one
    max_resources=Resources(cpus=1, memory_mib=1024),
)
def sleep(p: SleepPayload) -> dict[str, float]:
    time.sleep(p.seconds)
    if p.fail_probability > 0 and random.random() < p.fail_probability:
        raise JobFailed(f"simulated failure (fail_probability={p.fail_probability})")
    return {"slept": p.seconds}
