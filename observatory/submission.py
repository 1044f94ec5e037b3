"""Accepting jobs: validate, store as PENDING, publish `job.created`. Plain code, testable without Ray."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from contracts import EventType, Job, JobAccepted, JobSubmission, Producer
from observatory.errors import BusUnavailable, JobConflict, JobNotFound
from observatory.events import event_id, publish_job_events, unpublished_events
from observatory.jobs import Registry
from observatory.ports import Bus, Created, JobStore, NewJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    body: JobAccepted
    created: bool  # False: an idempotency key matched an earlier job, which is returned instead


Mark = Callable[[Sequence[uuid.UUID]], None]


class SubmissionService:
    """`mark`: how published jobs are marked so (default: `jobs.mark_published` before answering). The
    gateway hands the marks to a background group instead: the mark only spares the sweeper a second publish
    (same event ids, so a late or lost mark costs a duplicate delivery the processors skip, never a job), and
    is not worth a round trip on every accepted request."""

    def __init__(
        self, jobs: JobStore, bus: Bus, registry: Registry, source: Producer, mark: Mark | None = None
    ) -> None:
        self._jobs, self._bus, self._registry, self._source = jobs, bus, registry, source
        self._mark = mark or jobs.mark_published

    def validate(self, submissions: Sequence[JobSubmission], batch: bool) -> list[NewJob]:
        """Check every submission before any is stored (a batch is all-or-nothing)."""
        new: list[NewJob] = []
        for i, sub in enumerate(submissions):
            where: list[str | int] = ["body", "jobs", i] if batch else ["body"]
            payload = self._registry.validate(sub.type, sub.payload, where)
            job_type = self._registry.get(sub.type)
            timeout = sub.timeout_s if sub.timeout_s is not None else job_type.default_timeout_s  # type: ignore[union-attr]
            resources = self._registry.resources(sub.type, sub.resources, where)
            new.append(
                NewJob(uuid.uuid4(), sub.type, payload, "", sub.idempotency_key, sub.max_attempts, timeout, resources)
            )
        return new

    def submit(self, new: Sequence[NewJob], correlation_id: str | None) -> list[Accepted]:
        return self.submit_many([(new, correlation_id)])[0]

    def submit_many(self, requests: Sequence[tuple[Sequence[NewJob], str | None]]) -> list[list[Accepted]]:
        """Several requests' jobs in one transaction and one publish (group commit); per request, in order.
        Nothing is answered before the jobs are committed."""
        stamped = [_stamped(new, correlation_id or str(uuid.uuid4())) for new, correlation_id in requests]
        created = self._jobs.create([j for jobs in stamped for j in jobs])
        self._publish([c for c in created if c.created])
        out: list[list[Accepted]] = []
        for jobs in stamped:
            mine, created = created[: len(jobs)], created[len(jobs) :]
            out.append([Accepted(self._accepted(c), c.created) for c in mine])
        return out

    def _publish(self, created: Sequence[Created], mark: Mark | None = None) -> None:
        if not created:
            return
        try:
            publish_work(self._jobs, self._bus, [c.job for c in created], self._source, mark or self._mark)
        except BusUnavailable as e:
            # The jobs are safe in the store as PENDING and unpublished; the sweeper publishes them later.
            log.warning("publish failed, %d job(s) left for the sweeper: %s", len(created), e)

    def cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel a PENDING, RETRYING or RUNNING job. A running handler is stopped by its processor,
        which checks the job's status while it waits for the handler.

        The cancel is committed before its event is published, so a broker that is down does not undo it: the
        caller is answered with the cancelled job, and `job.cancelled` (same event id) is published again by the
        processor that meets the job's work message or stops its running handler, or, for a job whose work
        message was never published either (accepted while the broker was down, cancelled before the sweeper
        ran), by the sweeper (see `sweep`)."""
        job = self._jobs.cancel(job_id) or self._refused(
            job_id, "only PENDING, RETRYING or RUNNING jobs can be cancelled"
        )
        try:
            publish_job_events(self._bus, [job], self._source)
        except BusUnavailable as e:
            log.warning("job %s cancelled; its event is left for the processor that meets the job: %s", job_id, e)
        return job

    def requeue(self, job_id: uuid.UUID) -> Job:
        """Run a dead-lettered job again with a fresh set of attempts."""
        job = self._jobs.requeue(job_id) or self._refused(job_id, "only DEAD_LETTERED jobs can be requeued")
        self._publish([Created(job, True)], mark=self._jobs.mark_published)  # marked at once, unconditionally
        return job

    def _refused(self, job_id: uuid.UUID, rule: str) -> NoReturn:
        """The store refused a transition: 404 when the job is unknown, else 409 naming its state."""
        current = self._jobs.get(job_id)
        if current is None:
            raise JobNotFound(job_id)
        raise JobConflict(f"job {job_id} is {current.status.value}: {rule}")

    @staticmethod
    def _accepted(c: Created) -> JobAccepted:
        return JobAccepted(
            job_id=c.job.id,
            event_id=event_id(c.job.id, EventType.JOB_CREATED, 0),
            status=c.job.status,
            correlation_id=c.job.correlation_id,
        )


def _stamped(new: Sequence[NewJob], correlation_id: str) -> list[NewJob]:
    """One correlation id for every job of a request."""
    return [dataclasses.replace(j, correlation_id=correlation_id) for j in new]


def sweep(jobs: JobStore, bus: Bus, source: Producer, older_than_s: float, limit: int = 500) -> int:
    """Publish the jobs whose last publish was never confirmed (PENDING ones, and those cancelled since: see
    `unpublished_events`), then mark them. Safe to repeat: same event ids."""
    stale = jobs.unpublished(older_than_s, limit)
    publish_work(jobs, bus, stale, source)
    return len(stale)


def publish_work(jobs: JobStore, bus: Bus, work: Sequence[Job], source: Producer, mark: Mark | None = None) -> None:
    """Put the jobs on the work queues in one publish, then mark them published (a crash in between only
    means the sweeper publishes them again, with the same event ids)."""
    if work:
        bus.publish_many([event for job in work for event in unpublished_events(job, source)])
        (mark or jobs.mark_published)([job.id for job in work])
