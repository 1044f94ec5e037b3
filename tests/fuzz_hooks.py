"""schemathesis hooks for the fuzz runs with a key (SCHEMATHESIS_HOOKS=tests.fuzz_hooks): jobs that a
schema-valid case submits are made quick, as the job tests' QUICK bounds do, so the fuzz drives the API and
the pipeline rather than the CPU (the published limits are a 300 s sleep, 50 million primes, 10^9 samples)."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode

from tests.helpers import QUICK, QUICK_ATTEMPTS


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    """Only schema-valid (positive) cases, only numbers above a QUICK bound, each lowered to that bound: a
    valid case stays valid under the published schema (every bound lies inside its field's published range)
    and a schema-violating case is sent exactly as generated."""
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE or not isinstance(case.body, dict):
        return case
    body = dict(case.body)
    if isinstance(body.get("jobs"), list):
        body["jobs"] = [quicken(job) for job in body["jobs"]]
    else:
        body = quicken(body)
    if body != case.body:  # an assignment has schemathesis check the body again: only where something changed
        case.body = body
    return case


def quicken(job: Any) -> Any:
    if not isinstance(job, dict):
        return job
    job = dict(job)
    if _above(job.get("max_attempts"), QUICK_ATTEMPTS):
        job["max_attempts"] = QUICK_ATTEMPTS
    if isinstance(job.get("payload"), dict):
        job["payload"] = {
            name: QUICK[name] if name in QUICK and _above(value, QUICK[name]) else value
            for name, value in job["payload"].items()
        }
    return job


def _above(value: Any, bound: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > bound
