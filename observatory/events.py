"""Building event envelopes. Event ids are derived from (job, type, version), so an event that is
emitted again after a crash or by the sweeper carries the same id and is stored and counted once."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence

from contracts import EventEnvelope, EventType, Job, JobEventPayload, JobStatus, Producer
from observatory import __version__
from observatory.ports import Bus

_EVENT_NS = uuid.UUID("6f1c7a52-8a0e-4d0b-9a57-3c1f0e6d2b41")

# The event that a job's status was reached by. RETRYING and DEAD_LETTERED are reached by a failed
# attempt, which is recorded as its own `job.failed` event one version earlier.
_TYPE_FOR_STATUS = {
    JobStatus.RUNNING: EventType.JOB_STARTED,
    JobStatus.RETRYING: EventType.JOB_RETRYING,
    JobStatus.COMPLETED: EventType.JOB_COMPLETED,
    JobStatus.FAILED: EventType.JOB_FAILED,
    JobStatus.DEAD_LETTERED: EventType.JOB_DEAD_LETTERED,
    JobStatus.CANCELLED: EventType.JOB_CANCELLED,
}
_AFTER_FAILED_ATTEMPT = (JobStatus.RETRYING, JobStatus.DEAD_LETTERED)


def producer(service: str, instance_id: str = "") -> Producer:
    return Producer(
        service=service, instance_id=instance_id or f"{socket.gethostname()}:{os.getpid()}", version=__version__
    )


def event_id(job_id: uuid.UUID, event_type: EventType, version: int) -> uuid.UUID:
    return uuid.uuid5(_EVENT_NS, f"{job_id}:{event_type.value}:{version}")


def _event(job: Job, source: Producer, event_type: EventType, status: JobStatus, version: int) -> EventEnvelope:
    return EventEnvelope(
        event_type=event_type,
        event_id=event_id(job.id, event_type, version),
        occurred_at=job.updated_at or job.created_at,
        producer=source,
        correlation_id=job.correlation_id,
        idempotency_key=job.idempotency_key,
        payload=JobEventPayload(
            job_id=job.id,
            job_type=job.type,
            status=status,
            version=version,
            attempt=job.attempts,
            result=job.result if status is JobStatus.COMPLETED else None,
            error=job.error,
        ),
    )


def job_events(job: Job, source: Producer) -> list[EventEnvelope]:
    """The events that record how the job reached its current state, oldest first."""
    if job.status is JobStatus.PENDING:
        kind = EventType.JOB_CREATED if job.version == 0 else EventType.JOB_REQUEUED
        return [_event(job, source, kind, job.status, job.version)]
    events = [_event(job, source, _TYPE_FOR_STATUS[job.status], job.status, job.version)]
    if job.status in _AFTER_FAILED_ATTEMPT:
        events.insert(0, _event(job, source, EventType.JOB_FAILED, JobStatus.FAILED, job.version - 1))
    return events


def publish_job_events(bus: Bus, jobs: Sequence[Job], source: Producer) -> None:
    """Publish the events of each job's current state, all in one publish (safe to repeat: the ids are
    deterministic)."""
    bus.publish_many([event for job in jobs for event in job_events(job, source)])


def unpublished_events(job: Job, source: Producer) -> list[EventEnvelope]:
    """What the sweeper publishes for a job whose last publish was never confirmed: a PENDING job's work
    message; a job cancelled since (with the broker down for the cancel too, no processor ever meets it)
    its current state's events, so the stats count it — and, when the cancel was its only transition
    (version 1: created, then cancelled), its `job.created` as the submission would have sent it."""
    if job.status is not JobStatus.CANCELLED:
        return [work_message(job, source)]
    events = job_events(job, source)
    if job.version == 1:
        created = job.model_copy(
            update={"status": JobStatus.PENDING, "version": 0, "updated_at": job.created_at, "finished_at": None}
        )
        events.insert(0, work_message(created, source))
    return events


def work_message(job: Job, source: Producer) -> EventEnvelope:
    """What goes onto the jobs queue for the job's next run: its latest event."""
    return job_events(job, source)[-1]
