from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from observatory.jobs.registry import job_type


class NoopPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


@job_type(
    "noop",
    NoopPayload,
    "Does nothing and succeeds: for measuring the platform's own cost per job. Runs inside the processor.",
    default_timeout_s=10.0,
    isolated=False,
)
def noop(_: NoopPayload) -> None:
    return None
