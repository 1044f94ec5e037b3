"""The authoritative job store on PostgreSQL (psycopg 3 with a connection pool)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from contracts import Job, JobPage, JobStatus
from observatory.errors import StoreUnavailable
from observatory.paging import decode_cursor, encode_cursor
from observatory.ports import Created, NewJob

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {ns};
CREATE TABLE IF NOT EXISTS {ns}.jobs (
    id              uuid PRIMARY KEY,
    type            text NOT NULL,
    status          text NOT NULL,
    payload         jsonb NOT NULL,
    result          jsonb,
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    version         integer NOT NULL DEFAULT 0,
    worker          text,
    correlation_id  text NOT NULL,
    idempotency_key text UNIQUE,
    published       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_created_idx ON {ns}.jobs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_status_idx ON {ns}.jobs (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_unpublished_idx ON {ns}.jobs (created_at) WHERE NOT published;
"""

_COLUMNS = (
    "id, type, status, payload, result, error, attempts, created_at, started_at, finished_at, "
    "correlation_id, idempotency_key, version"
)


def _job(row: dict[str, Any]) -> Job:
    return Job.model_validate(row)


class PostgresJobStore:
    def __init__(self, dsn: str, namespace: str, max_size: int = 10) -> None:
        self._ns = sql.Identifier(namespace)
        self._lock_key = f"observatory:{namespace}"
        self._pool = psycopg_pool.ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            timeout=10,
            open=False,
            check=psycopg_pool.ConnectionPool.check_connection,
            kwargs={"row_factory": dict_row, "connect_timeout": 5},
        )
        self._opened = False

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(ns=self._ns)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        try:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as e:
            raise StoreUnavailable(f"PostgreSQL: {e}; check POSTGRES_DSN and that the server is up") from e

    def setup(self) -> None:
        with self._conn() as conn, conn.transaction():
            # Several replicas start at once; the advisory lock serialises their CREATE ... IF NOT EXISTS.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_key,))
            conn.execute(self._q(_SCHEMA))

    def create(self, jobs: Sequence[NewJob]) -> list[Created]:
        insert = self._q(
            "INSERT INTO {ns}.jobs (id, type, status, payload, correlation_id, idempotency_key) "
            f"VALUES (%s, %s, 'PENDING', %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_COLUMNS}"
        )
        existing = self._q(f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE idempotency_key = %s")
        out: list[Created] = []
        with self._conn() as conn, conn.transaction():
            for j in jobs:
                row = conn.execute(
                    insert, (j.id, j.type, Jsonb(j.payload), j.correlation_id, j.idempotency_key)
                ).fetchone()
                if row is not None:
                    out.append(Created(_job(row), True))
                else:
                    found = conn.execute(existing, (j.idempotency_key,)).fetchone()
                    assert found is not None  # the conflicting row is committed: ON CONFLICT waited for it
                    out.append(Created(_job(found), False))
        return out

    def mark_published(self, job_ids: Sequence[UUID]) -> None:
        if not job_ids:
            return
        with self._conn() as conn:
            conn.execute(self._q("UPDATE {ns}.jobs SET published = true WHERE id = ANY(%s)"), (list(job_ids),))

    def unpublished(self, older_than_s: float, limit: int) -> list[Job]:
        q = self._q(
            f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE NOT published AND status = 'PENDING' "
            "AND created_at < clock_timestamp() - make_interval(secs => %s) ORDER BY created_at LIMIT %s"
        )
        with self._conn() as conn:
            return [_job(r) for r in conn.execute(q, (older_than_s, limit)).fetchall()]

    def get(self, job_id: UUID) -> Job | None:
        with self._conn() as conn:
            row = conn.execute(self._q(f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE id = %s"), (job_id,)).fetchone()
        return _job(row) if row else None

    def list(self, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None) -> JobPage:
        where, args = ["true"], []
        if status is not None:
            where.append("status = %s")
            args.append(status.value)
        if job_type is not None:
            where.append("type = %s")
            args.append(job_type)
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            where.append("(created_at, id) < (%s, %s)")
            args += [created_at, last_id]
        q = self._q(
            f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT %s"
        )
        with self._conn() as conn:
            rows = conn.execute(q, (*args, limit + 1)).fetchall()
        items = [_job(r) for r in rows[:limit]]
        more = len(rows) > limit
        return JobPage(items=items, next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None)

    def start(self, job_id: UUID, worker: str, rerun: bool) -> Job | None:
        allowed = ["PENDING", "RUNNING"] if rerun else ["PENDING"]
        q = self._q(
            "UPDATE {ns}.jobs SET status = 'RUNNING', started_at = clock_timestamp(), attempts = attempts + 1, "
            f"version = version + 1, worker = %s WHERE id = %s AND status = ANY(%s) RETURNING {_COLUMNS}"
        )
        with self._conn() as conn:
            row = conn.execute(q, (worker, job_id, allowed)).fetchone()
        return _job(row) if row else None

    def finish(self, job_id: UUID, status: JobStatus, result: Any, error: str | None) -> Job | None:
        q = self._q(
            "UPDATE {ns}.jobs SET status = %s, result = %s, error = %s, finished_at = clock_timestamp(), "
            f"version = version + 1 WHERE id = %s AND status = 'RUNNING' RETURNING {_COLUMNS}"
        )
        with self._conn() as conn:
            row = conn.execute(q, (status.value, Jsonb(result), error, job_id)).fetchone()
        return _job(row) if row else None

    def counts(self) -> tuple[dict[tuple[str, JobStatus], int], datetime | None]:
        with self._conn() as conn:
            rows = conn.execute(
                self._q("SELECT type, status, count(*) AS n FROM {ns}.jobs GROUP BY type, status")
            ).fetchall()
            last = conn.execute(
                self._q("SELECT max(greatest(created_at, started_at, finished_at)) AS t FROM {ns}.jobs")
            ).fetchone()
        return {(r["type"], JobStatus(r["status"])): r["n"] for r in rows}, (last or {}).get("t")

    def ping(self) -> None:
        with self._conn() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        if self._opened:
            self._pool.close()
            self._opened = False
