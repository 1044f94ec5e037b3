"""The embedded job store: the same lifecycle rules as PostgreSQL, in one SQLite file."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from contracts import FINAL_STATUSES, Attempt, DeadLetter, DeadLetterPage, Job, JobPage, JobStatus, Resources
from observatory.adapters.sql_common import (
    FAIL_BUMP,
    SingleJobCalls,
    attempt_note_sql,
    fail_status,
    find_clause,
    first_only,
    job_filters,
    ran_on_columns,
    removable,
)
from observatory.adapters.sqlite_base import SQLiteFile, from_us, json_ids, marks, now_us, to_us
from observatory.errors import StoreUnavailable
from observatory.paging import decode_cursor, next_cursor
from observatory.ports import AttemptNote, Counts, Created, Expired, Finish, NewJob, RanOn

_COLUMNS = (
    "id, type, status, payload, result, error, attempts, max_attempts, timeout_s, resources, created_us, "
    "started_us, finished_us, updated_us, correlation_id, idempotency_key, version"
)
_RETURNING = f"RETURNING {_COLUMNS}"
# The jobs the sweeper looks at, as its index (migration 4) states them.
_UNSWEPT = "published = 0 AND status IN ('PENDING', 'CANCELLED')"
MAX_TEXT = 65536


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=UUID(row["id"]),
        type=row["type"],
        status=JobStatus(row["status"]),
        payload=json.loads(row["payload"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        timeout_s=row["timeout_s"],
        resources=None if row["resources"] is None else Resources.model_validate_json(row["resources"]),
        created_at=from_us(row["created_us"]),
        started_at=from_us(row["started_us"]),
        finished_at=from_us(row["finished_us"]),
        updated_at=from_us(row["updated_us"]),
        correlation_id=row["correlation_id"],
        idempotency_key=row["idempotency_key"],
        version=row["version"],
    )


class SQLiteJobStore(SingleJobCalls):
    def __init__(self, path: Path) -> None:
        self._db = SQLiteFile(path, "sqlite_jobs", StoreUnavailable)

    def setup(self) -> None:
        self._db.setup()

    def create(self, jobs: Sequence[NewJob]) -> list[Created]:
        insert = (
            "INSERT INTO jobs (id, type, status, payload, correlation_id, idempotency_key, max_attempts, "
            "attempt_limit, timeout_s, resources, created_us, updated_us) "
            "VALUES (?, ?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (idempotency_key) DO NOTHING {_RETURNING}"
        )
        out: list[Created] = []
        with self._db.write() as conn:
            for j in jobs:
                now = now_us()
                args = (
                    str(j.id),
                    j.type,
                    json.dumps(j.payload),
                    j.correlation_id,
                    j.idempotency_key,
                    j.max_attempts,
                    j.max_attempts,
                    j.timeout_s,
                    None if j.resources is None else j.resources.model_dump_json(),
                    now,
                    now,
                )
                row = conn.execute(insert, args).fetchone()
                if row is not None:
                    out.append(Created(_job(row), True))
                else:
                    found = conn.execute(
                        f"SELECT {_COLUMNS} FROM jobs WHERE idempotency_key = ?", (j.idempotency_key,)
                    ).fetchone()
                    out.append(Created(_job(found), False))
        return out

    def mark_published(self, job_ids: Sequence[UUID], first_run_only: bool = False) -> None:
        if not job_ids:
            return
        only = " AND attempt_limit = max_attempts" if first_run_only else ""  # requeue raises attempt_limit
        with self._db.write() as conn:
            conn.executemany(
                f"UPDATE jobs SET published = 1 WHERE id = ? AND {_UNSWEPT}{only}", [(str(i),) for i in job_ids]
            )

    def unpublished(self, older_than_s: float, limit: int) -> list[Job]:
        cutoff = now_us() - int(older_than_s * 1_000_000)
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE {_UNSWEPT} AND created_us < ? ORDER BY created_us LIMIT ?",
                (cutoff, limit),
            ).fetchall()
        return [_job(r) for r in rows]

    def get(self, job_id: UUID) -> Job | None:
        with self._db.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (str(job_id),)).fetchone()
        return _job(row) if row else None

    def get_many(self, job_ids: Sequence[UUID]) -> dict[UUID, Job]:
        if not job_ids:
            return {}
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
        with self._db.read() as conn:
            return {job.id: job for job in (_job(r) for r in conn.execute(sql, (json_ids(job_ids),)).fetchall())}

    def find(self, key: str, limit: int) -> list[Job]:
        where, args = find_clause(key, "?")
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE ({where}) ORDER BY created_us DESC, id DESC LIMIT ?"
        with self._db.read() as conn:
            return [_job(r) for r in conn.execute(sql, (*args, limit)).fetchall()]

    def list(self, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None) -> JobPage:
        where, args = job_filters(status, job_type, "?")
        where.insert(0, "1")
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            where.append("(created_us < ? OR (created_us = ? AND id < ?))")
            args += [to_us(created_at), to_us(created_at), str(last_id)]
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY created_us DESC, id DESC LIMIT ?"
        with self._db.read() as conn:
            rows = conn.execute(sql, (*args, limit + 1)).fetchall()
        items = [_job(r) for r in rows[:limit]]
        return JobPage(items=items, next_cursor=next_cursor(items, len(rows), limit))

    @staticmethod
    def _transition(
        conn: sqlite3.Connection, sets: str, job_id: UUID, allowed: tuple[str, ...], *args: Any, bump: str = "1"
    ) -> Job | None:
        """One conditional state change; `sets` and `bump` (the version increment) take `args` in order."""
        row = conn.execute(
            f"UPDATE jobs SET {sets}, version = version + {bump}, updated_us = ? "
            f"WHERE id = ? AND status IN ({marks(allowed)}) {_RETURNING}",
            (*args, now_us(), str(job_id), *allowed),
        ).fetchone()
        return _job(row) if row else None

    @staticmethod
    def _close_attempt(conn: sqlite3.Connection, job: Job, error: str | None) -> None:
        conn.execute(
            "UPDATE job_attempts SET finished_us = ?, error = ? "
            "WHERE job_id = ? AND number = ? AND finished_us IS NULL",
            (to_us(job.updated_at), error, str(job.id), job.attempts),
        )

    def start_many(
        self, starts: Sequence[tuple[UUID, bool]], worker: str, here: RanOn | None = None
    ) -> list[Job | None]:
        started: dict[UUID, Job] = {}
        with self._db.write() as conn:
            for job_id, rerun in starts:
                if job_id not in started and (job := self._start(conn, job_id, worker, rerun, here)) is not None:
                    started[job_id] = job
        return first_only([job_id for job_id, _ in starts], started)

    def _start(
        self, conn: sqlite3.Connection, job_id: UUID, worker: str, rerun: bool, here: RanOn | None
    ) -> Job | None:
        allowed = ("PENDING", "RETRYING", "RUNNING") if rerun else ("PENDING", "RETRYING")
        now = now_us()
        job = self._transition(
            conn,
            "status = 'RUNNING', started_us = ?, finished_us = NULL, attempts = attempts + 1, worker = ?",
            job_id,
            allowed,
            now,
            worker,
        )
        if job is not None:
            conn.execute(
                "INSERT INTO job_attempts (job_id, number, worker, started_us, node, executor) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (str(job.id), job.attempts, worker, now, *ran_on_columns(here)),
            )
        return job

    def finish_many(self, finishes: Sequence[Finish]) -> list[Job | None]:
        with self._db.write() as conn:
            return [self._complete(conn, f) if f.error is None else self._fail(conn, f) for f in finishes]

    def _complete(self, conn: sqlite3.Connection, f: Finish) -> Job | None:
        job = self._transition(
            conn,
            "status = 'COMPLETED', result = ?, error = NULL, finished_us = ?",
            f.job_id,
            ("RUNNING",),
            json.dumps(f.result),
            now_us(),
        )
        if job is not None:
            self._close_attempt(conn, job, None)
        return job

    def _fail(self, conn: sqlite3.Connection, f: Finish) -> Job | None:
        error = f.error or ""
        job = self._transition(
            conn,
            f"status = {fail_status('?')}, error = ?, finished_us = ?",
            f.job_id,
            ("RUNNING",),
            *(f.dead_letter, f.retry, error, now_us(), f.retry, f.dead_letter),
            bump=FAIL_BUMP.format(ph="?"),
        )
        if job is not None:
            self._close_attempt(conn, job, error)
            if job.status is JobStatus.DEAD_LETTERED:
                self._insert_dead_letter(conn, job.id, job.type, error, job.model_dump_json(exclude={"result"}))
        return job

    def cancel(self, job_id: UUID) -> Job | None:
        with self._db.write() as conn:
            job = self._transition(
                conn, "status = 'CANCELLED', finished_us = ?", job_id, ("PENDING", "RETRYING", "RUNNING"), now_us()
            )
            if job is not None:
                self._close_attempt(conn, job, "cancelled")
        return job

    def requeue(self, job_id: UUID) -> Job | None:
        with self._db.write() as conn:
            job = self._transition(
                conn,
                "status = 'PENDING', attempt_limit = attempts + max_attempts, error = NULL, result = NULL, "
                "finished_us = NULL, published = 0",
                job_id,
                ("DEAD_LETTERED",),
            )
            if job is not None:
                conn.execute("DELETE FROM dead_letters WHERE job_id = ?", (str(job_id),))
        return job

    def attempts(self, job_id: UUID) -> list[Attempt]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT number, worker, started_us, finished_us, error, node, executor, waiting FROM job_attempts "
                "WHERE job_id = ? ORDER BY number",
                (str(job_id),),
            ).fetchall()
        return [
            Attempt(
                number=r["number"],
                worker=r["worker"],
                started_at=from_us(r["started_us"]),
                finished_at=from_us(r["finished_us"]),
                error=r["error"],
                node=r["node"],
                executor=r["executor"],
                waiting=r["waiting"],
            )
            for r in rows
        ]

    def note_attempt(self, job_id: UUID, number: int, note: AttemptNote) -> None:
        sql, args = attempt_note_sql("job_attempts", str(job_id), number, note, "?")
        with self._db.write() as conn:
            conn.execute(sql, args)

    @staticmethod
    def _insert_dead_letter(
        conn: sqlite3.Connection, job_id: UUID | None, job_type: str | None, reason: str, message: str
    ) -> None:
        conn.execute(
            "INSERT INTO dead_letters (id, job_id, job_type, reason, message, created_us) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (job_id) DO NOTHING",
            (
                str(uuid.uuid4()),
                None if job_id is None else str(job_id),
                job_type,
                reason[:MAX_TEXT],
                message[:MAX_TEXT],
                now_us(),
            ),
        )

    def dead_letter(self, job_id: UUID | None, job_type: str | None, reason: str, message: str) -> None:
        with self._db.write() as conn:
            self._insert_dead_letter(conn, job_id, job_type, reason, message)

    def dead_letters(self, limit: int, cursor: str | None) -> DeadLetterPage:
        where, args = "1", []
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            where = "(created_us < ? OR (created_us = ? AND id < ?))"
            args = [to_us(created_at), to_us(created_at), str(last_id)]
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT id, job_id, job_type, reason, message, created_us FROM dead_letters "
                f"WHERE {where} ORDER BY created_us DESC, id DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        items = [
            DeadLetter(
                id=UUID(r["id"]),
                job_id=None if r["job_id"] is None else UUID(r["job_id"]),
                job_type=r["job_type"],
                reason=r["reason"],
                message=r["message"],
                created_at=from_us(r["created_us"]),
            )
            for r in rows[:limit]
        ]
        return DeadLetterPage(items=items, next_cursor=next_cursor(items, len(rows), limit))

    def dead_letter_count(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def unfinished(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT count(*) FROM jobs WHERE status IN ('PENDING', 'RETRYING')").fetchone()[0])

    def oldest_pending(self) -> datetime | None:
        with self._db.read() as conn:
            return from_us(conn.execute("SELECT min(updated_us) FROM jobs WHERE status = 'PENDING'").fetchone()[0])

    def recent_outcomes(self, window_s: float) -> dict[JobStatus, int]:
        final = [s.value for s in FINAL_STATUSES]
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT status, count(*) AS n FROM jobs WHERE status IN ({','.join('?' * len(final))}) "
                "AND updated_us > ? GROUP BY status",
                (*final, now_us() - int(window_s * 1_000_000)),
            ).fetchall()
        return {JobStatus(r["status"]): r["n"] for r in rows}

    def counts(self) -> tuple[Counts, datetime | None]:
        """The rows and the purged tally in one statement (one snapshot: a purge is in one or the other)."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT type, status, sum(n) AS n FROM (SELECT type, status, count(*) AS n FROM jobs "
                "GROUP BY type, status UNION ALL SELECT type, status, n FROM purged_counts) GROUP BY type, status"
            ).fetchall()
            last = conn.execute("SELECT max(updated_us) FROM jobs").fetchone()[0]
        return {(r["type"], JobStatus(r["status"])): r["n"] for r in rows}, from_us(last)

    def expired(self, cutoff: datetime, limit: int, dead_letters: bool, after: Expired | None) -> list[Expired]:
        statuses = removable(dead_letters)  # `+status`: not by the status index, which lists every finished job
        keyset, args = "1", []
        if after is not None:
            keyset, args = "(finished_us, id) > (?, ?)", [to_us(after.finished_at), str(after.job_id)]
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT finished_us, id FROM jobs WHERE finished_us < ? AND +status IN ({marks(statuses)}) "
                f"AND {keyset} ORDER BY finished_us, id LIMIT ?",
                (to_us(cutoff), *statuses, *args, limit),
            ).fetchall()
        return [Expired(from_us(r["finished_us"]), UUID(r["id"])) for r in rows]

    def purge(self, job_ids: Sequence[UUID], cutoff: datetime, dead_letters: bool) -> int:
        """One write transaction: the jobs, their attempts and dead letters (no foreign keys here), the tally."""
        statuses = removable(dead_letters)
        with self._db.write() as conn:
            gone = conn.execute(
                "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?)) AND finished_us < ? "
                f"AND +status IN ({marks(statuses)}) RETURNING id, type, status",
                (json_ids(job_ids), to_us(cutoff), *statuses),
            ).fetchall()
            removed = json_ids([r["id"] for r in gone])
            for table in ("job_attempts", "dead_letters"):
                conn.execute(f"DELETE FROM {table} WHERE job_id IN (SELECT value FROM json_each(?))", (removed,))  # noqa: S608 - fixed table names
            tally = Counter((r["type"], r["status"]) for r in gone)
            conn.executemany(
                "INSERT INTO purged_counts (type, status, n) VALUES (?, ?, ?) "
                "ON CONFLICT (type, status) DO UPDATE SET n = n + excluded.n",
                [(t, s, n) for (t, s), n in tally.items()],
            )
        return len(gone)

    def purged_counts(self) -> Counts:
        with self._db.read() as conn:
            rows = conn.execute("SELECT type, status, n FROM purged_counts").fetchall()
        return {(r["type"], JobStatus(r["status"])): r["n"] for r in rows}

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()
