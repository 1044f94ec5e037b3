"""Building event envelopes. Event ids are derived from (job, type, version), so an event that is
emitted again after a crash or by the sweeper carries the same id and is stored and counted once."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime

from contracts import EventEnvelope, EventType, Job, JobEventPayload, Producer
from observatory import __version__

_EVENT_NS = uuid.UUID("6f1c7a52-8a0e-4d0b-9a57-3c1f0e6d2b41")

_TYPE_FOR_STATUS = {
    "PENDING": EventType.JOB_CREATED,
    "RUNNING": EventType.JOB_STARTED,
    "COMPLETED": EventType.JOB_COMPLETED,
    "FAILED": EventType.JOB_FAILED,
}


def producer(service: str, instance_id: str = "") -> Producer:
    return Producer(
        service=service, instance_id=instance_id or f"{socket.gethostname()}:{os.getpid()}", version=__version__
    )


def event_id(job_id: uuid.UUID, event_type: EventType, version: int) -> uuid.UUID:
    return uuid.uuid5(_EVENT_NS, f"{job_id}:{event_type.value}:{version}")


def job_event(job: Job, source: Producer) -> EventEnvelope:
    """The event that records the job's current state, stamped with the time the store recorded it."""
    event_type = _TYPE_FOR_STATUS[job.status.value]
    stamps = {EventType.JOB_CREATED: job.created_at, EventType.JOB_STARTED: job.started_at}
    occurred: datetime = stamps.get(event_type, job.finished_at) or job.created_at
    return EventEnvelope(
        event_type=event_type,
        event_id=event_id(job.id, event_type, job.version),
        occurred_at=occurred,
        producer=source,
        correlation_id=job.correlation_id,
        idempotency_key=job.idempotency_key,
        payload=JobEventPayload(
            job_id=job.id,
            job_type=job.type,
            status=job.status,
            version=job.version,
            attempt=job.attempts,
            result=job.result if job.status.is_final else None,
            error=job.error,
        ),
    )
