"""Runs a job's handler as a Ray task, so a timeout or a cancellation can stop it for real:
`ray.cancel(force=True)` kills the worker process running it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from contracts import Job
from observatory.jobs import default_registry
from observatory.processing import Outcome, describe, outcome_of_error

WAIT_S = 0.2  # how often the runner looks at the task
CANCEL_CHECK_S = 1.0  # how often it asks the job store whether the job was cancelled


@ray.remote(num_cpus=0, max_retries=0)
def run_handler(job_type: str, payload: dict[str, Any]) -> Any:
    return default_registry().run(job_type, payload)


class RayTaskRunner:
    def __init__(self, resources: dict[str, float] | None = None) -> None:
        self._resources = resources or {}  # custom resources that place the handler tasks (e.g. worker nodes)

    def __call__(self, job: Job, cancelled: Callable[[], bool]) -> Outcome:
        task = run_handler.options(name=f"job:{job.type}:{job.id}", resources=self._resources)
        ref = task.remote(job.type, job.payload)
        deadline = time.monotonic() + job.timeout_s
        next_check = time.monotonic() + CANCEL_CHECK_S
        while True:
            ready, _ = ray.wait([ref], timeout=WAIT_S)
            if ready:
                return self._collect(ref)
            now = time.monotonic()
            if now >= deadline:
                ray.cancel(ref, force=True)
                return Outcome(error=f"timed out after {job.timeout_s:g}s (timeout_s)", timed_out=True)
            if now >= next_check:
                next_check = now + CANCEL_CHECK_S
                if cancelled():
                    ray.cancel(ref, force=True)
                    return Outcome(cancelled=True)

    @staticmethod
    def _collect(ref: ray.ObjectRef) -> Outcome:
        try:
            return Outcome(result=ray.get(ref))
        except RayTaskError as e:  # the handler raised: judge the original exception
            return outcome_of_error(e.cause if isinstance(e.cause, BaseException) else e)
        except RayError as e:  # the worker died under the handler (e.g. out of memory)
            return Outcome(error=f"worker failed: {describe(e)}")
