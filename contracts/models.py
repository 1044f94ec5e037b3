"""Pydantic v2 models for every boundary: HTTP bodies, bus messages and stored documents."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

# The event contract's version, MAJOR.MINOR. 1.1 added the retry, dead-letter, cancel and requeue events;
# 1.2 lets a reader take any 1.x event (see EventEnvelope._tolerant).
CONTRACT_VERSION = "1.2"
CONTRACT_MAJOR, CONTRACT_MINOR = (int(part) for part in CONTRACT_VERSION.split("."))

IdempotencyKey = str
# No NUL characters in stored text: PostgreSQL's text and jsonb cannot hold them, so every mode refuses them.
NO_NUL = r"^[^\x00]*$"


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


def json_numbers(value: Any) -> Any:
    """Numbers as JSON Schema counts them: 7.0 is the integer 7 (strict validation alone would refuse it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    return value


class _Input(BaseModel):
    """A request body: unknown fields refused, and no coercion between JSON types ("3" is not 3)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v if k == "payload" else json_numbers(v) for k, v in data.items()}
        return data


RESOURCE_NAME = r"^[A-Za-z][A-Za-z0-9_.:/-]{0,63}$"
RESERVED_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


class Resources(_Input):
    """What one run of a job's handler asks Ray for; Ray starts it on a node that has this much free."""

    cpus: float = Field(default=0, ge=0, le=1024, description="CPU cores (fractions allowed).")
    memory_mib: int = Field(default=0, ge=0, le=4_194_304, description="Memory Ray reserves for the run, MiB.")
    gpus: float = Field(default=0, ge=0, le=64)
    custom: dict[str, float] = Field(
        default_factory=dict, max_length=16, description='Custom Ray resources a node offers, e.g. `{"ssd": 1}`.'
    )

    @field_validator("custom")
    @classmethod
    def _custom_names(cls, v: dict[str, float]) -> dict[str, float]:
        for name, amount in v.items():
            if name in RESERVED_RESOURCES or not re.fullmatch(RESOURCE_NAME, name):
                raise ValueError(f"custom resource {name!r}: a name like `ssd` (not CPU, GPU or memory)")
            if not 0 <= amount <= 1_000_000:
                raise ValueError(f"custom resource {name!r}: an amount from 0 to 1000000")
        return v

    def exceeds(self, limit: Resources) -> list[tuple[str, str]]:
        """(field, message) for each amount above `limit`'s."""
        over = [
            (name, f"at most {getattr(limit, name):g} for this job type")
            for name in ("cpus", "memory_mib", "gpus")
            if getattr(self, name) > getattr(limit, name)
        ]
        for name, amount in self.custom.items():
            if name not in limit.custom:
                over.append((f"custom.{name}", f"not a resource this job type may ask for ({name!r})"))
            elif amount > limit.custom[name]:
                over.append((f"custom.{name}", f"at most {limit.custom[name]:g} for this job type"))
        return over


class JobSubmission(_Input):
    """What a client sends to `POST /api/jobs`; the payload is checked against the type's own model."""

    type: str = Field(min_length=1, max_length=64, description="A registered job type, see GET /api/job-types.")
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: IdempotencyKey | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts before the job is dead-lettered.")
    timeout_s: float | None = Field(
        default=None, gt=0, le=3600, description="Per-attempt time limit; default: the job type's."
    )
    resources: Resources | None = Field(
        default=None,
        description="What each run asks Ray for, where the job type allows it (see GET /api/job-types): the fields "
        "given replace the type's defaults, up to its limits. Not for types that run inside the processor.",
    )


class BatchSubmission(_Input):
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
    worker: str = Field(description="The processor that took the job: `processor-N:<pid>`.")
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    node: str | None = Field(default=None, description="The Ray node (its id) where the handler ran.")
    executor: str | None = Field(
        default=None,
        description="The process that ran the handler: `<pid>@<node ip>` (a Ray worker, or the processor).",
    )
    waiting: str | None = Field(
        default=None, description="Why the handler has not started yet (resources no node has free, or offers)."
    )


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
    resources: Resources | None = Field(
        default=None, description="What each run asks Ray for; none for types that run inside the processor."
    )
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
    """One event: every document in the event store, and every message on the bus but those of several events
    (event_batch)."""

    contract_version: str = Field(
        default=CONTRACT_VERSION,
        description="MAJOR.MINOR of the event contract. A reader takes every event of its major version: from a "
        "newer minor it reads the fields it knows and ignores the rest; another major is dead-lettered.",
    )
    event_type: EventType
    event_id: UUID
    occurred_at: datetime
    producer: Producer
    correlation_id: str
    idempotency_key: IdempotencyKey | None = None
    payload: JobEventPayload

    @model_validator(mode="before")
    @classmethod
    def _tolerant(cls, data: Any) -> Any:
        """Tolerant reader: an event of a newer minor version loses the fields this code does not know (it
        may add fields, never change or remove one); an unknown major version is refused with the reason."""
        if not isinstance(data, dict) or "contract_version" not in data:
            return data
        version = data["contract_version"]
        parts = version.split(".") if isinstance(version, str) else []
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"contract_version {version!r} is not MAJOR.MINOR")
        major, minor = int(parts[0]), int(parts[1])
        if major != CONTRACT_MAJOR:
            raise ValueError(
                f"contract version {version} has an unknown major version: this reader understands "
                f"{CONTRACT_MAJOR}.x up to {CONTRACT_VERSION}; upgrade the consumers before the producers"
            )
        if minor <= CONTRACT_MINOR:
            return data  # a version this code knows: every field must be one it knows
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        for name, model in (("payload", JobEventPayload), ("producer", Producer)):
            if isinstance(known.get(name), dict):
                known[name] = {k: v for k, v in known[name].items() if k in model.model_fields}
        return known

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("occurred_at must carry a timezone")
        return v.astimezone(UTC)


class EventBatch(RootModel[list[EventEnvelope]]):
    """Events in one message, in the order they happened, on a queue of arrays: on `batches`, what one publish
    sends the aggregators besides the work of isolated jobs (`job.created`, `job.requeued`, one per message, as
    the processors take those one per task slot); on `inline_batches` and `batches`, the work of inline jobs, up
    to 32 per message. A message on the other queues is one `event_envelope`."""

    root: list[EventEnvelope] = Field(min_length=1)


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

    @field_validator("startsAt", mode="before")
    @classmethod
    def _timestamp_text(cls, v: Any) -> Any:
        """A date-time string as the schema says (or a datetime from Python): no numbers read as epoch seconds."""
        if not isinstance(v, str | datetime):
            raise ValueError("startsAt must be an RFC 3339 date-time string")
        return v

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
    resources: Resources | None = Field(
        default=None, description="What a run asks Ray for by default; none: it runs inside the processor."
    )
    max_resources: Resources | None = Field(
        default=None, description="The most a submission's `resources` may ask for."
    )


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


Scope = Literal["submit", "operate", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("submit", "operate", "read", "admin")


class ApiKeyCreate(_Input):
    """What `POST /api/keys` (scope admin) and `observatory keys create` take."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._@-]*$")
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=4,
        description="submit: create jobs; operate: cancel and requeue; read: the read model and the stream; "
        "admin: manage keys.",
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="Default: never expires.")

    @field_validator("scopes")
    @classmethod
    def _unique(cls, scopes: list[Scope]) -> list[Scope]:
        return sorted(set(scopes), key=SCOPES.index)


class ApiKeyInfo(_Strict):
    """An API key as stored: never the key itself, which is shown once at creation."""

    id: str = Field(description="The key's public prefix, also its id (`obs_<id>_...`).")
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def refusal(self, now: datetime) -> str | None:
        """Why this key cannot be used now, or None when it can."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return None


class ApiKeyCreated(ApiKeyInfo):
    key: str = Field(description="The key, shown only this once; send it as `Authorization: Bearer <key>`.")
