"""SQL that the PostgreSQL and SQLite job stores share, written once with the dialect's placeholder."""

from __future__ import annotations

from typing import Any

from contracts import JobStatus


def fail_status(ph: str) -> str:
    """The status after a failed attempt; takes (dead_letter, retry) in that order."""
    return (
        f"CASE WHEN {ph} THEN 'DEAD_LETTERED' WHEN NOT {ph} THEN 'FAILED' "
        "WHEN attempts >= attempt_limit THEN 'DEAD_LETTERED' ELSE 'RETRYING' END"
    )


# A failed attempt is two events (job.failed, then job.retrying/job.dead_lettered), so the version moves
# by 2; a permanent failure is one. Takes (retry, dead_letter).
FAIL_BUMP = "CASE WHEN {ph} OR {ph} THEN 2 ELSE 1 END"


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
