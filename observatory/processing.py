"""Running one job message: the processor's logic as a plain class, testable without Ray.

Order matters for the guarantees: the outcome is committed to the job store, then its events are
published (and a retry scheduled), and only then is the message acked. A crash anywhere before the ack
means redelivery; every step is safe to repeat.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from contracts import EventEnvelope, Job, JobStatus, Producer
from observatory.errors import JobFailed
from observatory.events import publish_job_events, work_message
from observatory.jobs import Registry
from observatory.ports import Bus, Delivery, JobStore
from observatory.retry import backoff_s

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class Outcome:
    result: Any = None
    error: str | None = None
    retry: bool = True  # False: a permanent failure, no retry can fix it
    dead_letter: bool = False  # straight to the dead letters (no handler for the type here)
    cancelled: bool = False
    timed_out: bool = False


class ProcessingHooks(Protocol):
    """Where the processor reports what it does (metrics); see observatory.metrics.Metrics."""

    def attempt_started(self, job_type: str) -> None: ...

    def attempt_finished(self, job_type: str, status: JobStatus, seconds: float, timed_out: bool) -> None: ...


class NoHooks:
    def attempt_started(self, job_type: str) -> None:
        pass

    def attempt_finished(self, job_type: str, status: JobStatus, seconds: float, timed_out: bool) -> None:
        pass


class Runner(Protocol):
    def __call__(self, job: Job, cancelled: Callable[[], bool]) -> Outcome:
        """Run the job's handler; stop it early when `cancelled()` turns true or its timeout passes."""


def describe(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(e)).strip()[:MAX_ERROR_CHARS]


def outcome_of_error(e: BaseException) -> Outcome:
    if isinstance(e, JobFailed):
        return Outcome(error=str(e)[:MAX_ERROR_CHARS], retry=not e.permanent)
    return Outcome(error=describe(e))  # a handler bug fails the attempt; it must not kill the processor


class InlineRunner:
    """Runs the handler in the calling thread: no hard timeout. For tests and tools; processors use Ray."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __call__(self, job: Job, cancelled: Callable[[], bool]) -> Outcome:
        try:
            return Outcome(result=self._registry.run(job.type, job.payload))
        except Exception as e:
            return outcome_of_error(e)


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 1.0
    max_s: float = 60.0


class JobProcessor:
    def __init__(
        self,
        jobs: JobStore,
        bus: Bus,
        registry: Registry,
        runner: Runner,
        source: Producer,
        worker: str,
        retry: RetryPolicy | None = None,
        hooks: ProcessingHooks | None = None,
    ) -> None:
        self._jobs, self._bus, self._registry, self._runner = jobs, bus, registry, runner
        self._source, self._worker = source, worker
        self._retry = retry or RetryPolicy()
        self._hooks = hooks or NoHooks()

    def handle(self, delivery: Delivery) -> Outcome | None:
        try:
            event = EventEnvelope.model_validate_json(delivery.body)
        except ValidationError as e:
            # Requeueing a message that can never be read would loop forever: dead-letter it with the reason.
            reason = "unreadable message: " + "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors(include_url=False)[:5]
            )
            self._jobs.dead_letter(None, None, reason, delivery.body.decode("utf-8", "replace"))
            delivery.reject(requeue=False)
            return None
        job_id = event.payload.job_id
        # A redelivered message means its previous consumer died mid-job, so a RUNNING job may run again;
        # a plain duplicate (e.g. re-published by the sweeper) must not start a second run.
        job = self._jobs.start(job_id, self._worker, rerun=delivery.redelivered)
        if job is None:
            self._settle_existing(job_id)
            delivery.ack()
            return None
        self._publish(job)
        self._hooks.attempt_started(job.type)
        began = time.perf_counter()
        outcome = self._run(job)
        status = self._record(job, outcome)
        self._hooks.attempt_finished(job.type, status, time.perf_counter() - began, outcome.timed_out)
        delivery.ack()
        return outcome

    def _run(self, job: Job) -> Outcome:
        if self._registry.get(job.type) is None:
            return Outcome(error=f"unknown job type {job.type!r}: no handler is registered here", dead_letter=True)
        return self._runner(job, lambda: self._is_cancelled(job))

    def _record(self, job: Job, outcome: Outcome) -> JobStatus:
        """Commit the outcome and publish its events; returns the status the job ended up in."""
        if outcome.cancelled:
            return JobStatus.CANCELLED  # the cancel request already committed it and published job.cancelled
        if outcome.error is None:
            done = self._jobs.complete(job.id, outcome.result)
        else:
            done = self._jobs.fail(job.id, outcome.error, retry=outcome.retry, dead_letter=outcome.dead_letter)
        if done is None:
            return JobStatus.CANCELLED  # cancelled while it ran: the cancellation stands
        self._publish(done)
        if done.status is JobStatus.RETRYING:
            delay = backoff_s(done.attempts, self._retry.base_s, self._retry.max_s)
            self._bus.schedule(work_message(done, self._source), delay)
        return done.status

    def _is_cancelled(self, job: Job) -> bool:
        current = self._jobs.get(job.id)
        return current is None or current.status is JobStatus.CANCELLED

    def _publish(self, job: Job) -> None:
        publish_job_events(self._bus, job, self._source)

    def _settle_existing(self, job_id: object) -> None:
        """A final job's last events may have been lost in a crash after commit: publish them again (same ids)."""
        job = self._jobs.get(job_id)  # type: ignore[arg-type]
        if job is None:
            log.warning("message for unknown job %s dropped", job_id)
            return
        if job.status.is_final:
            self._publish(job)
