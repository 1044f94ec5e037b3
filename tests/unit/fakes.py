"""In-memory fakes for the unit tests: a recording bus, delivery, hooks and a store wrapper.

They all append to one shared `calls` list when given one, so a test can check the order of
guarantees (commit, then publish, then ack) across the store, the bus and the delivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from contracts import EventEnvelope, EventType, Job, JobEventPayload, JobStatus, Producer
from observatory.errors import BusUnavailable, JobFailed
from observatory.events import event_id, work_message
from observatory.jobs import JobType, Registry
from observatory.ports import JobStore, NewJob

SOURCE = Producer(service="unit-test", instance_id="test:1", version="0.0.0")


class RecordingBus:
    """Keeps what was published and scheduled; `fail_after` published events it raises BusUnavailable."""

    def __init__(self, calls: list[str] | None = None, fail_after: int | None = None) -> None:
        self.calls = calls if calls is not None else []
        self.published: list[EventEnvelope] = []
        self.scheduled: list[tuple[EventEnvelope, float]] = []
        self._fail_after = fail_after

    def publish(self, event: EventEnvelope) -> None:
        if self._fail_after is not None and len(self.published) >= self._fail_after:
            raise BusUnavailable("broker down (test)")
        self.calls.append(f"publish {event.event_type.value}")
        self.published.append(event)

    def publish_many(self, events: Sequence[EventEnvelope]) -> None:
        for event in events:
            self.publish(event)

    def schedule(self, event: EventEnvelope, delay_s: float) -> None:
        self.calls.append(f"schedule {event.event_type.value}")
        self.scheduled.append((event, delay_s))

    @property
    def types(self) -> list[str]:
        return [e.event_type.value for e in self.published]


class FakeDelivery:
    def __init__(self, body: bytes, redelivered: bool = False, calls: list[str] | None = None) -> None:
        self.body, self.redelivered = body, redelivered
        self.calls = calls if calls is not None else []
        self.acked = False
        self.rejected: bool | None = None  # the `requeue` flag once rejected

    def ack(self) -> None:
        self.calls.append("ack")
        self.acked = True

    def reject(self, requeue: bool) -> None:
        self.calls.append(f"reject requeue={requeue}")
        self.rejected = requeue


class RecordingHooks:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[tuple[str, JobStatus, float, bool]] = []

    def attempt_started(self, job_type: str) -> None:
        self.started.append(job_type)

    def attempt_finished(self, job_type: str, status: JobStatus, seconds: float, timed_out: bool) -> None:
        self.finished.append((job_type, status, seconds, timed_out))


class Logged:
    """Wraps a real adapter and records the names of the named methods as they return."""

    def __init__(self, inner: Any, calls: list[str], methods: tuple[str, ...]) -> None:
        self._inner, self._calls, self._methods = inner, calls, methods

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._methods:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self._calls.append(name)
            return result

        return call


class EchoPayload(BaseModel):
    n: int
    label: str = "x"


def echo(p: EchoPayload) -> dict[str, Any]:
    return {"n": p.n, "label": p.label}


def boom(p: EchoPayload) -> None:
    raise ValueError(f"boom {p.n}")


def refuse(p: EchoPayload) -> None:
    raise JobFailed(f"bad input {p.n}", permanent=True)


def registry() -> Registry:
    return Registry(
        {
            "echo": JobType("echo", "Echo the payload back.", EchoPayload, echo, default_timeout_s=42.0),
            "boom": JobType("boom", "Always raises.", EchoPayload, boom),
            "refuse": JobType("refuse", "Fails for good.", EchoPayload, refuse),
            "quick": JobType("quick", "Echo, run inside the processor.", EchoPayload, echo, isolated=False),
        }
    )


def new_job(job_type: str = "echo", max_attempts: int = 3, key: str | None = None, n: int = 1) -> NewJob:
    return NewJob(uuid.uuid4(), job_type, {"n": n}, "corr-1", key, max_attempts, 30.0)


def stored_job(jobs: JobStore, job_type: str = "echo", max_attempts: int = 3) -> Job:
    [created] = jobs.create([new_job(job_type, max_attempts)])
    return created.job


def work_delivery(job: Job, redelivered: bool = False, calls: list[str] | None = None) -> FakeDelivery:
    return FakeDelivery(work_message(job, SOURCE).model_dump_json().encode(), redelivered, calls)


def job_event(
    job_id: uuid.UUID, version: int, status: JobStatus, event_type: EventType, occurred_at: datetime | None = None
) -> EventEnvelope:
    """One event of a job, with the deterministic id the producers give it."""
    return EventEnvelope(
        event_type=event_type,
        event_id=event_id(job_id, event_type, version),
        occurred_at=occurred_at or datetime.now(UTC),
        producer=SOURCE,
        correlation_id="c",
        payload=JobEventPayload(job_id=job_id, job_type="echo", status=status, version=version),
    )
