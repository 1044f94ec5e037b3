"""Pydantic v2 models for every boundary: HTTP bodies, bus messages and stored documents."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONTRACT_VERSION = "1.1"  # 1.1 added the retry, dead-letter, cancel and requeue events

IdempotencyKey = str


class JobStatus(StrEnum):
    """PENDING → RUNNING → COMPLETED; a failed attempt → RETRYING → RUNNING … → DEAD_LETTERED after the
    last attempt; CANCELLED from PENDING, RETRYING or RUNNING. FAILED is final for a handler's permanent
    failure (`JobFailed(permanent=True)`), which no retry can fix."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DEAD_LETTERED = "DEAD_LETTERED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DEAD_LETTERED, JobStatus.CANCELLED})


class EventType(StrEnum):
    JOB_CREATED = "job.created"
    JOB_STARTED = "job.started"
    JOB_RETRYING = "job.retrying"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_DEAD_LETTERED = "job.dead_lettered"
    JOB_CANCELLED = "job.cancelled"
    JOB_REQUEUED = "job.requeued"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobSubmission(_Strict):
    """What a client sends to `POST /api/jobs`; the payload is checked against the type's own model."""

    type: str = Field(min_length=1, max_length=64, description="A registered job type, see GET /api/job-types.")
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: IdempotencyKey | None = Field(default=None, min_length=1, max_length=200)
    max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts before the job is dead-lettered.")
    timeout_s: float | None = Field(
        default=None, gt=0, le=3600, description="Per-attempt time limit; default: the job type's."
    )


class BatchSubmission(_Strict):
    jobs: list[JobSubmission] = Field(min_length=1, max_length=1000)


class JobAccepted(_Strict):
    job_id: UUID
    event_id: UUID
    status: JobStatus
    correlation_id: str


class BatchAccepted(_Strict):
    accepted: list[JobAccepted]


class Attempt(_Strict):
    number: int
    worker: str
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None


class Job(_Strict):
    id: UUID
    type: str
    status: JobStatus
    payload: dict[str, Any]
    result: Any | None = None
    error: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    timeout_s: float = 300.0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    correlation_id: str
    idempotency_key: IdempotencyKey | None = None
    updated_at: datetime | None = None
    version: int = Field(default=0, description="Bumped on every event; orders a job's events.")
    attempt_history: list[Attempt] | None = Field(default=None, description="Filled in by GET /read/jobs/{id}.")


class JobPage(_Strict):
    items: list[Job]
    next_cursor: str | None = None


class Producer(_Strict):
    service: str
    instance_id: str
    version: str


class JobEventPayload(_Strict):
    job_id: UUID
    job_type: str
    status: JobStatus
    version: int = Field(ge=0)
    attempt: int = Field(default=0, ge=0)
    result: Any | None = None
    error: str | None = None


class EventEnvelope(_Strict):
    """Every message on the bus and every document in the event store."""

    contract_version: Literal["1.0", "1.1"] = CONTRACT_VERSION
    event_type: EventType
    event_id: UUID
    occurred_at: datetime
    producer: Producer
    correlation_id: str
    idempotency_key: IdempotencyKey | None = None
    payload: JobEventPayload

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("occurred_at must carry a timezone")
        return v.astimezone(UTC)


class TypeStats(_Strict):
    total: int = 0
    pending: int = 0
    running: int = 0
    retrying: int = 0
    completed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    cancelled: int = 0


class Stats(_Strict):
    total_jobs: int = 0
    pending: int = 0
    running: int = 0
    retrying: int = 0
    completed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    by_type: dict[str, TypeStats] = Field(default_factory=dict)
    last_event_at: datetime | None = None
    source: Literal["cache", "store"] = Field(
        default="store", description="cache: the counters (Redis); store: recounted from the job store (fallback)"
    )

    @classmethod
    def from_counts(
        cls,
        counts: dict[tuple[str, JobStatus], int],
        last_event_at: datetime | None,
        source: Literal["cache", "store"],
    ) -> Stats:
        """Build stats from (type, status) -> count, the shape both the cache and the database give."""
        by_type: dict[str, TypeStats] = {}
        totals = dict.fromkeys((s.value.lower() for s in JobStatus), 0)
        for (job_type, status), n in sorted(counts.items()):
            if n == 0:
                continue
            field = status.value.lower()
            ts = by_type.setdefault(job_type, TypeStats())
            setattr(ts, field, getattr(ts, field) + n)
            ts.total += n
            totals[field] += n
        return cls(
            total_jobs=sum(totals.values()),
            by_type=by_type,
            last_event_at=last_event_at,
            source=source,
            **totals,
        )


class DeadLetter(_Strict):
    id: UUID
    job_id: UUID | None = Field(description="None for a message that could not even be read.")
    job_type: str | None = None
    reason: str
    message: str = Field(description="The message as it arrived (truncated to 64 KiB).")
    created_at: datetime


class DeadLetterPage(_Strict):
    items: list[DeadLetter]
    next_cursor: str | None = None


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(_Strict):
    name: str
    severity: Severity
    summary: str
    since: datetime
    source: Literal["alertmanager", "read-model"]
    runbook: str | None = None


class AlertList(_Strict):
    alerts: list[Alert]


class AlertmanagerAlert(BaseModel):
    """One alert of Alertmanager's webhook (version 4); unknown fields are ignored."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # noqa: N815 - Alertmanager's field name
    fingerprint: str = Field(min_length=1, max_length=64)

    def to_alert(self) -> Alert:
        name = self.labels.get("alertname", "unnamed")
        severity = self.labels.get("severity", "")
        return Alert(
            name=name,
            severity=Severity(severity) if severity in set(Severity) else Severity.WARNING,
            summary=self.annotations.get("summary", name),
            since=self.startsAt,
            source="alertmanager",
            runbook=self.annotations.get("runbook"),
        )


class AlertmanagerWebhook(BaseModel):
    version: str = "4"
    status: Literal["firing", "resolved"]
    alerts: list[AlertmanagerAlert] = Field(max_length=1000)


class JobTypeInfo(_Strict):
    type: str
    description: str
    payload_schema: dict[str, Any]


class ErrorDetail(_Strict):
    loc: list[str | int]
    msg: str


class ErrorBody(_Strict):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(_Strict):
    error: ErrorBody


class QueueInfo(_Strict):
    name: str
    depth: int = Field(description="Messages ready in the queue.")
    consumers: int


class RatePoint(_Strict):
    """One point of the live charts: what finished between the previous point and `at`."""

    at: datetime
    finished_per_s: float
    failure_rate: float = Field(ge=0, le=1, description="Share of the finished jobs that failed or dead-lettered.")


class StreamSnapshot(_Strict):
    """One message of `GET /read/stream` (server-sent event `snapshot`): computed once, sent to every page."""

    at: datetime
    stats: Stats
    alerts: list[Alert]
    recent: list[Job] = Field(description="The newest jobs, newest first.")
    queues: list[QueueInfo] = Field(description="Empty when the broker cannot be asked.")
    series: list[RatePoint] = Field(description="Throughput and failure rate over the last 15 minutes.")
