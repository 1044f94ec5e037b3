"""Running job messages: the processor's logic as a plain class, testable without Ray.

Order matters for the guarantees, for one message as for a micro-batch: the outcomes are committed to the
job store, then their events are published (and retries scheduled), and only then are the messages acked.
A crash anywhere before an ack means redelivery; every step is safe to repeat, and a redelivered message
first publishes its job's current events again (the crash may have come between a commit and its publish).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from pydantic import ValidationError

from contracts import EventEnvelope, Job, JobEventPayload, JobStatus, Producer
from observatory import unreadable
from observatory.errors import JobFailed
from observatory.events import publish_job_events, work_message
from observatory.jobs import Registry
from observatory.ports import Bus, Delivery, Finish, JobStore, RanOn
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
        here: RanOn | None = None,
    ) -> None:
        self._jobs, self._bus, self._registry, self._runner = jobs, bus, registry, runner
        self._source, self._worker = source, worker
        self._retry = retry or RetryPolicy()
        self._hooks = hooks or NoHooks()
        self._inline = InlineRunner(registry)
        self._here = here  # where inline handlers run: in this process

    def handle(self, delivery: Delivery) -> Outcome | None:
        return self.handle_batch([delivery])[0]

    def handle_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome | None]:
        """Run a micro-batch of job messages: one commit for the starts, one publish for their events, the
        handlers, one commit for the outcomes, one publish for theirs, then the acks. Each delivery's
        outcome, or None for a message that ran nothing (unreadable, a duplicate)."""
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        read = [(i, d, work) for i, d in enumerate(deliveries) if (work := self._work(d)) is not None]
        readable = [(i, d, work.job_id) for i, d, work in read]
        # A redelivered message means its previous consumer died mid-job, so a RUNNING job may run again;
        # a plain duplicate (e.g. re-published by the sweeper) must not start a second run.
        starts = [(job_id, d.redelivered) for _, d, job_id in readable]
        # Its previous consumer may also have died between committing a transition (a start, a failed
        # attempt) and publishing its events: publish the job's current state's events again (same ids, so
        # harmless if they were sent), or its history keeps a gap that no later event fills.
        before = self._jobs.get_many([job_id for job_id, rerun in starts if rerun])
        here = self._here if all(self._runs_here(work.job_type) for _, _, work in read) else None
        started = self._jobs.start_many(starts, self._worker, here)
        runs: list[tuple[int, Delivery, Job]] = []
        skipped: list[tuple[Delivery, UUID]] = []  # a duplicate, or a job no longer startable
        for (i, d, job_id), job in zip(readable, started, strict=True):
            if job is not None:
                runs.append((i, d, job))
            else:
                skipped.append((d, job_id))
        # A PENDING job's event is its work message, which this very message carries: not again.
        again = [job for job in before.values() if job.status is not JobStatus.PENDING]
        # A job skipped by the start that was not final when read before it changed in between: e.g. PENDING,
        # then cancelled; or RUNNING, then completed by the dead consumer's last statement, which the database
        # still committed after the kill. Read it again: its final events may never have been published.
        again += self._finals([i for _, i in skipped if i not in before or not before[i].status.is_final])
        publish_job_events(self._bus, [*again, *(job for _, _, job in runs)], self._source)
        for d, _ in skipped:
            d.ack()
        ran: list[tuple[Job, Outcome, float]] = []
        for _, _, job in runs:
            self._hooks.attempt_started(job.type)
            began = time.perf_counter()
            ran.append((job, self._run(job), time.perf_counter() - began))
        statuses = self._record([(job, outcome) for job, outcome, _ in ran])
        for (i, d, _), (job, outcome, seconds), status in zip(runs, ran, statuses, strict=True):
            self._hooks.attempt_finished(job.type, status, seconds, outcome.timed_out)
            d.ack()
            outcomes[i] = outcome
        return outcomes

    def _runs_here(self, job_type: str) -> bool:
        jt = self._registry.get(job_type)
        return jt is not None and not jt.isolated

    def _work(self, delivery: Delivery) -> JobEventPayload | None:
        try:
            return EventEnvelope.model_validate_json(delivery.body).payload
        except ValidationError as e:
            # Requeueing a message that can never be read would loop forever: dead-letter it with the reason.
            self._jobs.dead_letter(None, None, unreadable.reason(e), delivery.body.decode("utf-8", "replace"))
            delivery.reject(requeue=False)
            return None

    def _run(self, job: Job) -> Outcome:
        job_type = self._registry.get(job.type)
        if job_type is None:
            return Outcome(error=f"unknown job type {job.type!r}: no handler is registered here", dead_letter=True)
        if not job_type.isolated:
            return self._inline(job, lambda: False)
        return self._runner(job, lambda: self._is_cancelled(job))

    def _record(self, ran: Sequence[tuple[Job, Outcome]]) -> list[JobStatus]:
        """Commit the outcomes, publish their events, schedule retries; the status each job ended up in."""
        finishing = [(job, o) for job, o in ran if not o.cancelled]  # a cancel already committed
        done = self._jobs.finish_many(
            [Finish(job.id, o.result, o.error, o.retry, o.dead_letter) for job, o in finishing]
        )
        finished = {job.id: d for (job, _), d in zip(finishing, done, strict=True) if d is not None}
        # The others were cancelled before or while they ran: their cancellation's events go out again, in
        # case whoever cancelled committed it and could not publish (e.g. the broker was down).
        stopped = self._jobs.get_many([job.id for job, _ in ran if job.id not in finished])
        again = [job for job in stopped.values() if job.status.is_final]
        publish_job_events(self._bus, [*finished.values(), *again], self._source)
        for d in finished.values():
            if d.status is JobStatus.RETRYING:
                delay = backoff_s(d.attempts, self._retry.base_s, self._retry.max_s)
                self._bus.schedule(work_message(d, self._source), delay)
        return [finished[job.id].status if job.id in finished else JobStatus.CANCELLED for job, _ in ran]

    def _is_cancelled(self, job: Job) -> bool:
        current = self._jobs.get(job.id)
        return current is None or current.status is JobStatus.CANCELLED

    def _finals(self, job_ids: Sequence[UUID]) -> list[Job]:
        """Final jobs' last events may have been lost in a crash after commit: those jobs, to publish again."""
        found = self._jobs.get_many(job_ids)
        for job_id in job_ids:
            if job_id not in found:
                log.warning("message for unknown job %s dropped", job_id)
        return [job for job in found.values() if job.status.is_final]
