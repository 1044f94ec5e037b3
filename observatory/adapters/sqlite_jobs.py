"""The embedded job store: the same lifecycle rules as PostgreSQL, in one SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from contracts import Job, JobPage, JobStatus
from observatory.adapters.sqlite_base import SQLiteFile, from_us, now_us, to_us
from observatory.errors import StoreUnavailable
from observatory.paging import decode_cursor, encode_cursor
from observatory.ports import Created, NewJob

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY,
    type            TEXT NOT NULL,
    status          TEXT NOT NULL,
    payload         TEXT NOT NULL,
    result          TEXT,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 0,
    worker          TEXT,
    correlation_id  TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    published       INTEGER NOT NULL DEFAULT 0,
    created_us      INTEGER NOT NULL,
    started_us      INTEGER,
    finished_us     INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_status_idx ON jobs (status, created_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_unpublished_idx ON jobs (published, created_us);
"""

_COLUMNS = (
    "id, type, status, payload, result, error, attempts, created_us, started_us, finished_us, "
    "correlation_id, idempotency_key, version"
)


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=UUID(row["id"]),
        type=row["type"],
        status=JobStatus(row["status"]),
        payload=json.loads(row["payload"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        attempts=row["attempts"],
        created_at=from_us(row["created_us"]),
        started_at=from_us(row["started_us"]),
        finished_at=from_us(row["finished_us"]),
        correlation_id=row["correlation_id"],
        idempotency_key=row["idempotency_key"],
        version=row["version"],
    )


class SQLiteJobStore:
    def __init__(self, path: Path) -> None:
        self._db = SQLiteFile(path, _SCHEMA, StoreUnavailable)

    def setup(self) -> None:
        self._db.setup()

    def create(self, jobs: Sequence[NewJob]) -> list[Created]:
        insert = (
            "INSERT INTO jobs (id, type, status, payload, correlation_id, idempotency_key, created_us) "
            f"VALUES (?, ?, 'PENDING', ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_COLUMNS}"
        )
        out: list[Created] = []
        with self._db.write() as conn:
            for j in jobs:
                args = (str(j.id), j.type, json.dumps(j.payload), j.correlation_id, j.idempotency_key, now_us())
                row = conn.execute(insert, args).fetchone()
                if row is not None:
                    out.append(Created(_job(row), True))
                else:
                    found = conn.execute(
                        f"SELECT {_COLUMNS} FROM jobs WHERE idempotency_key = ?", (j.idempotency_key,)
                    ).fetchone()
                    out.append(Created(_job(found), False))
        return out

    def mark_published(self, job_ids: Sequence[UUID]) -> None:
        if not job_ids:
            return
        with self._db.write() as conn:
            conn.executemany("UPDATE jobs SET published = 1 WHERE id = ?", [(str(i),) for i in job_ids])

    def unpublished(self, older_than_s: float, limit: int) -> list[Job]:
        cutoff = now_us() - int(older_than_s * 1_000_000)
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE published = 0 AND status = 'PENDING' AND created_us < ? "
                "ORDER BY created_us LIMIT ?",
                (cutoff, limit),
            ).fetchall()
        return [_job(r) for r in rows]

    def get(self, job_id: UUID) -> Job | None:
        with self._db.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (str(job_id),)).fetchone()
        return _job(row) if row else None

    def list(self, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None) -> JobPage:
        where, args = ["1"], []
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        if job_type is not None:
            where.append("type = ?")
            args.append(job_type)
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            where.append("(created_us < ? OR (created_us = ? AND id < ?))")
            args += [to_us(created_at), to_us(created_at), str(last_id)]
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY created_us DESC, id DESC LIMIT ?"
        with self._db.read() as conn:
            rows = conn.execute(sql, (*args, limit + 1)).fetchall()
        items = [_job(r) for r in rows[:limit]]
        more = len(rows) > limit
        return JobPage(items=items, next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None)

    def start(self, job_id: UUID, worker: str, rerun: bool) -> Job | None:
        allowed = ("PENDING", "RUNNING" if rerun else "PENDING")
        with self._db.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = 'RUNNING', started_us = ?, attempts = attempts + 1, version = version + 1, "
                f"worker = ? WHERE id = ? AND status IN (?, ?) RETURNING {_COLUMNS}",
                (now_us(), worker, str(job_id), *allowed),
            ).fetchone()
        return _job(row) if row else None

    def finish(self, job_id: UUID, status: JobStatus, result: Any, error: str | None) -> Job | None:
        with self._db.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished_us = ?, version = version + 1 "
                f"WHERE id = ? AND status = 'RUNNING' RETURNING {_COLUMNS}",
                (status.value, json.dumps(result), error, now_us(), str(job_id)),
            ).fetchone()
        return _job(row) if row else None

    def counts(self) -> tuple[dict[tuple[str, JobStatus], int], datetime | None]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT type, status, count(*) AS n FROM jobs GROUP BY type, status").fetchall()
            last = conn.execute(
                "SELECT max(max(created_us, coalesce(started_us, 0), coalesce(finished_us, 0))) FROM jobs"
            ).fetchone()[0]
        return {(r["type"], JobStatus(r["status"])): r["n"] for r in rows}, from_us(last)

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()
