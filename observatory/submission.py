"""Accepting jobs: validate, store as PENDING, publish `job.created`. Plain code, testable without Ray."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from contracts import EventType, JobAccepted, JobSubmission, Producer
from observatory.errors import BusUnavailable
from observatory.events import event_id, job_event
from observatory.jobs import Registry
from observatory.ports import Bus, Created, JobStore, NewJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    body: JobAccepted
    created: bool  # False: an idempotency key matched an earlier job, which is returned instead


class SubmissionService:
    def __init__(self, jobs: JobStore, bus: Bus, registry: Registry, source: Producer) -> None:
        self._jobs, self._bus, self._registry, self._source = jobs, bus, registry, source

    def validate(self, submissions: Sequence[JobSubmission], batch: bool) -> list[NewJob]:
        """Check every submission before any is stored (a batch is all-or-nothing)."""
        new: list[NewJob] = []
        for i, sub in enumerate(submissions):
            where: list[str | int] = ["body", "jobs", i] if batch else ["body"]
            payload = self._registry.validate(sub.type, sub.payload, where)
            new.append(NewJob(uuid.uuid4(), sub.type, payload, "", sub.idempotency_key))
        return new

    def submit(self, new: Sequence[NewJob], correlation_id: str | None) -> list[Accepted]:
        correlation = correlation_id or str(uuid.uuid4())
        stamped = [NewJob(j.id, j.type, j.payload, correlation, j.idempotency_key) for j in new]
        created = self._jobs.create(stamped)
        self._publish([c for c in created if c.created])
        return [Accepted(self._accepted(c), c.created) for c in created]

    def _publish(self, created: Sequence[Created]) -> None:
        published: list[uuid.UUID] = []
        try:
            for c in created:
                self._bus.publish(job_event(c.job, self._source))
                published.append(c.job.id)
        except BusUnavailable as e:
            # The jobs are safe in the store as PENDING and unpublished; the sweeper publishes them later.
            log.warning("publish failed, %d job(s) left for the sweeper: %s", len(created) - len(published), e)
        finally:
            self._jobs.mark_published(published)

    @staticmethod
    def _accepted(c: Created) -> JobAccepted:
        return JobAccepted(
            job_id=c.job.id,
            event_id=event_id(c.job.id, EventType.JOB_CREATED, 0),
            status=c.job.status,
            correlation_id=c.job.correlation_id,
        )


def sweep(jobs: JobStore, bus: Bus, source: Producer, older_than_s: float, limit: int = 500) -> int:
    """Publish PENDING jobs whose `job.created` was never confirmed. Safe to repeat: same event ids."""
    stale = jobs.unpublished(older_than_s, limit)
    done: list[uuid.UUID] = []
    for job in stale:
        bus.publish(job_event(job, source))
        done.append(job.id)
    jobs.mark_published(done)
    return len(done)
