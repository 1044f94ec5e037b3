"""SQL that the PostgreSQL and SQLite job stores share, written once with the dialect's placeholder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from contracts import Job, JobStatus
from observatory.counting import FINAL
from observatory.ports import AttemptNote, Finish, RanOn


def fail_status(ph: str) -> str:
    """The status after a failed attempt; takes (dead_letter, retry) in that order."""
    return (
        f"CASE WHEN {ph} THEN 'DEAD_LETTERED' WHEN NOT {ph} THEN 'FAILED' "
        "WHEN attempts >= attempt_limit THEN 'DEAD_LETTERED' ELSE 'RETRYING' END"
    )


# A failed attempt is two events (job.failed, then job.retrying/job.dead_lettered), so the version moves
# by 2; a permanent failure is one. Takes (retry, dead_letter).
FAIL_BUMP = "CASE WHEN {ph} OR {ph} THEN 2 ELSE 1 END"


def removable(dead_letters: bool) -> list[str]:
    """The statuses retention removes: those no event can change any more, and DEAD_LETTERED (which a requeue
    can still change) only when asked explicitly."""
    statuses = sorted(FINAL | ({JobStatus.DEAD_LETTERED} if dead_letters else set()))
    return [s.value for s in statuses]


def find_clause(key: str, ph: str) -> tuple[str, list[Any]]:
    """WHERE clause and arguments that match a job by its id, correlation id or idempotency key."""
    clauses, args = [f"correlation_id = {ph}", f"idempotency_key = {ph}"], [key, key]
    try:
        args.append(str(UUID(key)))
        clauses.append(f"id = {ph}")
    except ValueError:
        pass
    return " OR ".join(clauses), args


def job_filters(status: JobStatus | None, job_type: str | None, ph: str) -> tuple[list[str], list[Any]]:
    """WHERE clauses and their arguments for the job list's optional filters."""
    where: list[str] = []
    args: list[Any] = []
    if status is not None:
        where.append(f"status = {ph}")
        args.append(status.value)
    if job_type is not None:
        where.append(f"type = {ph}")
        args.append(job_type)
    return where, args


def first_mentions(ids: Sequence[UUID]) -> list[bool]:
    """For each id, whether this is its first mention in the sequence."""
    seen: set[UUID] = set()
    out: list[bool] = []
    for job_id in ids:
        out.append(job_id not in seen)
        seen.add(job_id)
    return out


def first_only(ids: Sequence[UUID], started: dict[UUID, Job]) -> list[Job | None]:
    """The started job at the first mention of its id; None elsewhere (a duplicate must not run twice)."""
    return [started.get(job_id) if first else None for job_id, first in zip(ids, first_mentions(ids), strict=True)]


def ran_on_columns(here: RanOn | None) -> tuple[str | None, str | None]:
    """The attempt row's (node, executor) at its start."""
    return (None, None) if here is None else (here.node, here.executor)


def attempt_note_sql(table: str, job_id: Any, number: int, note: AttemptNote, ph: str) -> tuple[str, list[Any]]:
    """The UPDATE that records an attempt's note: where it started (its wait is over) or why it waits."""
    if note.ran_on is not None:
        sets, args = f"node = {ph}, executor = {ph}, waiting = NULL", [note.ran_on.node, note.ran_on.executor]
    else:
        sets, args = f"waiting = {ph}", [note.waiting]
    return f"UPDATE {table} SET {sets} WHERE job_id = {ph} AND number = {ph}", [*args, job_id, number]


class SingleJobCalls:
    """The one-job transitions as the batch of one, so both job stores have a single code path each."""

    def start_many(
        self, starts: Sequence[tuple[UUID, bool]], worker: str, here: RanOn | None = None
    ) -> list[Job | None]:
        raise NotImplementedError

    def finish_many(self, finishes: Sequence[Finish]) -> list[Job | None]:
        raise NotImplementedError

    def start(self, job_id: UUID, worker: str, rerun: bool) -> Job | None:
        return self.start_many([(job_id, rerun)], worker)[0]

    def complete(self, job_id: UUID, result: Any) -> Job | None:
        return self.finish_many([Finish(job_id, result=result)])[0]

    def fail(self, job_id: UUID, error: str, retry: bool, dead_letter: bool = False) -> Job | None:
        return self.finish_many([Finish(job_id, error=error, retry=retry, dead_letter=dead_letter)])[0]
