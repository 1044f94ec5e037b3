"""The backend interfaces. Each has a real adapter and an embedded one under `observatory.adapters`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from contracts import (
    Alert,
    ApiKeyInfo,
    Attempt,
    DeadLetterPage,
    EventEnvelope,
    Job,
    JobPage,
    JobStatus,
    Resources,
    Stats,
)


@dataclass(frozen=True)
class NewJob:
    id: UUID
    type: str
    payload: dict[str, Any]
    correlation_id: str
    idempotency_key: str | None = None
    max_attempts: int = 3
    timeout_s: float = 300.0
    resources: Resources | None = None  # what each run asks Ray for (None: an inline type)


@dataclass(frozen=True)
class RanOn:
    """Where a handler runs: the Ray node's id, and the process (`<pid>@<node ip>`)."""

    node: str
    executor: str


@dataclass(frozen=True)
class AttemptNote:
    """What a runner learns about an open attempt: where its handler started (which clears any wait), or
    why it has not started yet."""

    ran_on: RanOn | None = None
    waiting: str | None = None


@dataclass(frozen=True)
class Created:
    """The outcome of a create: the stored job, and False when an idempotency key matched an older job."""

    job: Job
    created: bool


@dataclass(frozen=True)
class Finish:
    """How one attempt ended, to record: a result, or an error (`retry`/`dead_letter` say what follows)."""

    job_id: UUID
    result: Any = None
    error: str | None = None
    retry: bool = True  # False: a permanent failure (FAILED)
    dead_letter: bool = False  # straight to the dead letters, attempts left or not


@dataclass(frozen=True)
class Expired:
    """A job that retention may remove, with its sort key (jobs are taken oldest first)."""

    finished_at: datetime
    job_id: UUID


# Jobs by (type, status): what the stats count.
Counts = dict[tuple[str, JobStatus], int]


class Delivery(Protocol):
    """One message handed to a consumer. `ack`/`reject` may be called from any thread, once."""

    body: bytes
    redelivered: bool

    def ack(self) -> None: ...

    def reject(self, requeue: bool) -> None: ...


class Bus(Protocol):
    def setup(self) -> None:
        """Declare the exchange and queues (idempotent)."""

    def publish(self, event: EventEnvelope) -> None:
        """Publish durably; returns only once the broker has confirmed it (raises BusUnavailable)."""

    def publish_many(self, events: Sequence[EventEnvelope]) -> None:
        """Publish all durably; returns once the broker has confirmed every one of them, with one wait for the
        whole batch (raises BusUnavailable: then any of them may or may not be published). Work events of
        isolated jobs go one per message, in order, and those of inline jobs in arrays of up to 32; the others
        together in one message, in order, after them (topology.messages)."""

    def schedule(self, event: EventEnvelope, delay_s: float) -> None:
        """Put `event` on the jobs queue after `delay_s` (retries): durable, never by sleeping."""

    def consume(
        self,
        queue: str,
        on_message: Callable[[Delivery], None],
        prefetch: int,
        stop: threading.Event,
        drain_s: float = 0.0,
    ) -> None:
        """Block in the calling thread, handing messages to `on_message`, until `stop` is set; then take no
        more, and wait up to `drain_s` for those handed over to be acked or rejected (unsettled ones go back
        to the queue when it returns)."""

    def depth(self, queue: str) -> int:
        """Messages ready for delivery: not those a consumer holds, nor scheduled ones not yet due."""

    def consumers(self, queue: str) -> int:
        """How many consumers are attached to the queue right now."""

    def ping(self) -> None: ...

    def close(self) -> None: ...


class JobStore(Protocol):
    def setup(self) -> None: ...

    def create(self, jobs: Sequence[NewJob]) -> list[Created]:
        """Insert all jobs atomically as PENDING; an existing idempotency key returns the older job."""

    def mark_published(self, job_ids: Sequence[UUID], first_run_only: bool = False) -> None:
        """`first_run_only`: skip jobs requeued since (a late mark from their first submission must not
        hide a requeued job from the sweeper)."""

    def unpublished(self, older_than_s: float, limit: int) -> list[Job]:
        """PENDING or CANCELLED jobs not marked published, created over `older_than_s` ago, oldest first."""

    def get(self, job_id: UUID) -> Job | None: ...

    def get_many(self, job_ids: Sequence[UUID]) -> dict[UUID, Job]:
        """The jobs among `job_ids` that exist, by id, in one read."""

    def list(self, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None) -> JobPage: ...

    def find(self, key: str, limit: int) -> list[Job]:
        """Jobs whose id, correlation id or idempotency key is `key`, newest first."""
        ...

    def start(self, job_id: UUID, worker: str, rerun: bool) -> Job | None:
        """PENDING/RETRYING -> RUNNING (also RUNNING -> RUNNING when `rerun`), recording a new attempt;
        None when the job may not start."""

    def start_many(
        self, starts: Sequence[tuple[UUID, bool]], worker: str, here: RanOn | None = None
    ) -> list[Job | None]:
        """`start` for each (job id, rerun), all in one transaction; in the same order. `here`: where their
        handlers run, when the caller runs them itself (inline types)."""

    def finish_many(self, finishes: Sequence[Finish]) -> list[Job | None]:
        """`complete` (no error) or `fail` for each, all in one transaction; in the same order."""

    def complete(self, job_id: UUID, result: Any) -> Job | None:
        """RUNNING -> COMPLETED; None when the job was not RUNNING (e.g. cancelled meanwhile)."""

    def fail(self, job_id: UUID, error: str, retry: bool, dead_letter: bool = False) -> Job | None:
        """RUNNING -> RETRYING, or DEAD_LETTERED (with a dead letter) once the attempts are used up or when
        `dead_letter`, or FAILED when `retry` is false; None when the job was not RUNNING."""

    def cancel(self, job_id: UUID) -> Job | None:
        """PENDING/RETRYING/RUNNING -> CANCELLED; None when the job is unknown or already final."""

    def requeue(self, job_id: UUID) -> Job | None:
        """DEAD_LETTERED -> PENDING with a fresh set of attempts; None when not dead-lettered."""

    def attempts(self, job_id: UUID) -> list[Attempt]: ...

    def note_attempt(self, job_id: UUID, number: int, note: AttemptNote) -> None:
        """Record where attempt `number` started running, or why it waits."""

    def dead_letter(self, job_id: UUID | None, job_type: str | None, reason: str, message: str) -> None:
        """Record an unprocessable message (no job, or a job it cannot run)."""

    def dead_letters(self, limit: int, cursor: str | None) -> DeadLetterPage: ...

    def dead_letter_count(self) -> int: ...

    def unfinished(self) -> int:
        """Jobs waiting to run: PENDING plus RETRYING (the backlog the gateway bounds)."""

    def oldest_pending(self) -> datetime | None:
        """When the job that has waited longest in PENDING became so (the autoscaler's wait), or None."""

    def recent_outcomes(self, window_s: float) -> dict[JobStatus, int]:
        """Final jobs by status whose last change is younger than `window_s`."""

    def counts(self) -> tuple[Counts, datetime | None]:
        """Every job ever stored by (type, status): the rows there now plus those retention removed (the
        purged tally, read in the same snapshot), and when a job last changed."""

    def expired(self, cutoff: datetime, limit: int, dead_letters: bool, after: Expired | None) -> list[Expired]:
        """Up to `limit` jobs retention may remove, oldest first, after `after`: COMPLETED, FAILED or
        CANCELLED (and DEAD_LETTERED when `dead_letters`) that finished before `cutoff`."""

    def purge(self, job_ids: Sequence[UUID], cutoff: datetime, dead_letters: bool) -> int:
        """Delete those of `job_ids` that `expired` would still return, with their attempts and dead letters,
        and add them to the purged tally, in one transaction. Returns how many were deleted."""

    def purged_counts(self) -> Counts:
        """The purged tally: jobs removed by retention, by (type, status) at removal."""

    def ping(self) -> None: ...

    def close(self) -> None: ...


class EventStore(Protocol):
    def setup(self) -> None: ...

    def append(self, event: EventEnvelope) -> bool:
        """Store the event once; False when an event with that id is already stored (MongoDB: by this
        release; one an earlier release stored is stored again beside it, and read once)."""

    def append_many(self, events: Sequence[EventEnvelope]) -> list[bool]:
        """`append` for each, in one write; in the same order."""

    def scan(self, batch: int) -> Iterator[list[EventEnvelope]]:
        """Every stored event, `batch` at a time, read with server-side cursors (events stored meanwhile may or
        may not be included; on MongoDB, an event stored by this release and an earlier one comes twice)."""

    def for_job(self, job_id: UUID) -> list[EventEnvelope]:
        """The job's events in the order they happened."""

    def remove_jobs(self, job_ids: Sequence[UUID]) -> int:
        """Delete every event of these jobs (a small batch: retention's); returns how many were deleted."""

    def count_jobs(self, job_ids: Sequence[UUID]) -> int:
        """How many events these jobs have (what `remove_jobs` would delete)."""

    def ping(self) -> None: ...

    def close(self) -> None: ...


class Counters(Protocol):
    def setup(self) -> None: ...

    def apply(self, event: EventEnvelope) -> bool:
        """Count the event once (atomically); False when it was counted before."""

    def apply_many(self, events: Sequence[EventEnvelope]) -> list[bool]:
        """`apply` for each, in order, with one round trip; each event still counted atomically."""

    def complete(self) -> bool:
        """Whether the counters hold every stored event: set by the last finished rebuild, and gone with
        the counters themselves (a flush, a restart without persistence, a deleted key)."""

    def begin_rebuild(self, lease_s: float, baseline: Counts | None = None) -> str | None:
        """Start a rebuild: in one atomic step, every count and job state forgotten, the counts set to
        `baseline` (the jobs retention removed, whose events are gone), a new generation token, `complete`
        cleared until `finish_rebuild(token)`, and a lease of `lease_s` (renewed by `renew_rebuild`). None
        (and nothing changed) while another rebuild holds a live lease."""

    def renew_rebuild(self, token: str, lease_s: float) -> None:
        """Extend the lease of the rebuild `token` (a rebuilder that dies lets its lease run out)."""

    def finish_rebuild(self, token: str) -> bool:
        """Mark the counters complete, unless they were wiped or another rebuild began since `token`."""

    def abandon_rebuild(self, token: str) -> None:
        """Free the lease of the rebuild `token` without marking the counters complete (its counts are known
        to be off), so the next rebuild can start at once."""

    def rebuilding(self) -> bool:
        """Whether a rebuild holds a live lease (retention waits for it: see observatory.retention)."""

    def reset(self) -> None:
        """Forget every count and every event seen (alerts and rate buckets are kept)."""

    def stats(self) -> Stats | None:
        """None unless `complete` (an empty, partial or rebuilding cache), so callers fall back to the job store."""

    def set_alerts(self, firing: dict[str, Alert], resolved: list[str]) -> None:
        """Store firing alerts by fingerprint and forget resolved ones (shared by every read replica)."""

    def alerts(self) -> list[Alert]: ...

    def take(self, bucket: str, rate_per_s: float, burst: float, cost: float) -> float:
        """Token bucket shared by every process: take `cost` tokens from `bucket` (refilled at `rate_per_s`, at
        most `burst`). Returns 0.0 when taken, else the seconds until the request could pass (nothing taken).
        A cost above the burst passes on a full bucket and leaves it in debt, so big batches still flow at the rate."""

    def take_many(self, bucket: str, rate_per_s: float, burst: float, costs: Sequence[float]) -> list[float]:
        """`take` for each cost in turn, in one round trip: the wait of each (0.0 when taken)."""

    def ping(self) -> None: ...

    def close(self) -> None: ...


class KeyStore(Protocol):
    """API keys, stored as digests (see observatory.keys); kept next to the jobs in the authoritative store."""

    def setup(self) -> None: ...

    def add(self, info: ApiKeyInfo, digest: str) -> bool:
        """Store a new key; False (and nothing changed) when its id is taken."""

    def get(self, key_id: str) -> tuple[ApiKeyInfo, str] | None:
        """The key's record and digest."""

    def list(self) -> list[ApiKeyInfo]:
        """Every key, revoked and expired included, oldest first."""

    def table(self) -> dict[str, tuple[ApiKeyInfo, str]]:
        """Every key by id, with its digest (what a replica checks requests against)."""

    def revoke(self, key_id: str) -> ApiKeyInfo | None:
        """Revoke a key (again is fine); None when there is no such key."""

    def touch(self, used: dict[str, datetime]) -> None:
        """Record when keys were last used (batched by the caller)."""

    def any_active(self) -> bool:
        """Whether some key is neither revoked nor expired."""

    def ping(self) -> None: ...

    def close(self) -> None: ...
