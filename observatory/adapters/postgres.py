"""The authoritative job store on PostgreSQL (psycopg 3 with a connection pool)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from contracts import FINAL_STATUSES, Attempt, DeadLetter, DeadLetterPage, Job, JobPage, JobStatus
from observatory.adapters.pg_base import PostgresSchema
from observatory.adapters.sql_common import (
    FAIL_BUMP,
    SingleJobCalls,
    attempt_note_sql,
    fail_status,
    find_clause,
    first_mentions,
    first_only,
    job_filters,
    ran_on_columns,
    removable,
)
from observatory.errors import InvalidSubmission
from observatory.paging import decode_cursor, next_cursor
from observatory.ports import AttemptNote, Counts, Created, Expired, Finish, NewJob, RanOn

_COLUMNS = (
    "id, type, status, payload, result, error, attempts, max_attempts, timeout_s, resources, created_at, "
    "started_at, finished_at, updated_at, correlation_id, idempotency_key, version"
)
_RETURNING = f"RETURNING {_COLUMNS}"
# The jobs the sweeper looks at, as its index (migration 4) states them.
_UNSWEPT = "NOT published AND status IN ('PENDING', 'CANCELLED')"
MAX_TEXT = 65536  # dead-letter reasons and messages are cut to this


def _job(row: dict[str, Any]) -> Job:
    return Job.model_validate(row)


class PostgresJobStore(PostgresSchema, SingleJobCalls):
    def __init__(self, dsn: str, namespace: str, max_size: int = 10) -> None:
        super().__init__(dsn, namespace, max_size)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        try:
            with super()._conn() as conn:
                yield conn
        except psycopg.DataError as e:  # e.g. a NUL character, which PostgreSQL text and jsonb cannot hold
            raise InvalidSubmission("a value cannot be stored", [(["request"], str(e).splitlines()[0])]) from e

    def setup(self) -> None:
        self._migrate()

    def create(self, jobs: Sequence[NewJob]) -> list[Created]:
        """One INSERT for the whole batch; jobs whose idempotency key is taken come back as the older job."""
        if not jobs:
            return []
        insert = self._q(
            "INSERT INTO {ns}.jobs (id, type, status, payload, correlation_id, idempotency_key, max_attempts, "
            "attempt_limit, timeout_s, resources) SELECT id, type, 'PENDING', payload, correlation_id, key, attempts, "
            "attempts, timeout_s, resources FROM unnest(%s::uuid[], %s::text[], %s::jsonb[], %s::text[], %s::text[], "
            "%s::int[], %s::float8[], %s::jsonb[]) "
            "WITH ORDINALITY AS v(id, type, payload, correlation_id, key, attempts, timeout_s, resources, n) "
            f"ORDER BY n ON CONFLICT (idempotency_key) DO NOTHING {_RETURNING}"
        )
        columns = (
            [j.id for j in jobs],
            [j.type for j in jobs],
            [Jsonb(j.payload) for j in jobs],
            [j.correlation_id for j in jobs],
            [j.idempotency_key for j in jobs],
            [j.max_attempts for j in jobs],
            [j.timeout_s for j in jobs],
            [None if j.resources is None else Jsonb(j.resources.model_dump()) for j in jobs],
        )
        # Without idempotency keys the INSERT is the whole work, committed by itself in one round trip; with
        # keys, the SELECT of the older jobs shares its transaction (no half-done batch if it fails).
        keyed = any(j.idempotency_key for j in jobs)
        with self._conn() as conn, conn.transaction() if keyed else contextlib.nullcontext():
            new = {row["id"]: _job(row) for row in conn.execute(insert, columns).fetchall()}
            taken = [j.idempotency_key for j in jobs if j.id not in new]
            older = {}
            if taken:  # the conflicting rows are committed: ON CONFLICT waited for them
                rows = conn.execute(
                    self._q(f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE idempotency_key = ANY(%s)"), (taken,)
                ).fetchall()
                older = {row["idempotency_key"]: _job(row) for row in rows}
        return [Created(new[j.id], True) if j.id in new else Created(older[j.idempotency_key], False) for j in jobs]

    def mark_published(self, job_ids: Sequence[UUID], first_run_only: bool = False) -> None:
        if not job_ids:
            return
        only = " AND attempt_limit = max_attempts" if first_run_only else ""  # requeue raises attempt_limit
        # A mark only spares the sweeper a second publish: only rows it would look at are written (see
        # `unpublished`), rows a processor's batch holds are skipped, and the rest are locked in id order, so
        # this never deadlocks with that batch (which then fails and requeues).
        q = self._q(
            "UPDATE {ns}.jobs SET published = true WHERE id IN (SELECT id FROM {ns}.jobs WHERE id = ANY(%s) "
            f"AND {_UNSWEPT}{only} ORDER BY id FOR UPDATE SKIP LOCKED)"
        )
        with self._conn() as conn:
            conn.execute(q, (list(job_ids),))

    def unpublished(self, older_than_s: float, limit: int) -> list[Job]:
        q = self._q(
            f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE {_UNSWEPT} "
            "AND created_at < clock_timestamp() - make_interval(secs => %s) ORDER BY created_at LIMIT %s"
        )
        with self._conn() as conn:
            return [_job(r) for r in conn.execute(q, (older_than_s, limit)).fetchall()]

    def get(self, job_id: UUID) -> Job | None:
        with self._conn() as conn:
            row = conn.execute(self._q(f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE id = %s"), (job_id,)).fetchone()
        return _job(row) if row else None

    def get_many(self, job_ids: Sequence[UUID]) -> dict[UUID, Job]:
        if not job_ids:
            return {}
        with self._conn() as conn:
            rows = conn.execute(self._q(f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE id = ANY(%s)"), (list(job_ids),))
            return {row["id"]: _job(row) for row in rows.fetchall()}

    def find(self, key: str, limit: int) -> list[Job]:
        where, args = find_clause(key, "%s")
        q = self._q(f"SELECT {_COLUMNS} FROM {{ns}}.jobs WHERE ({where}) ORDER BY created_at DESC, id DESC LIMIT %s")
        with self._conn() as conn:
            return [_job(r) for r in conn.execute(q, (*args, limit)).fetchall()]

    def list(self, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None) -> JobPage:
        where, args = job_filters(status, job_type, "%s")
        where.insert(0, "true")
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
        return JobPage(items=items, next_cursor=next_cursor(items, len(rows), limit))

    def _transition(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        sets: str,
        job_id: UUID,
        allowed: list[str],
        *args: Any,
        bump: str = "1",
    ) -> Job | None:
        """One conditional state change; `sets` and `bump` (the version increment) take `args` in order."""
        q = self._q(
            f"UPDATE {{ns}}.jobs SET {sets}, version = version + {bump}, updated_at = clock_timestamp() "
            f"WHERE id = %s AND status = ANY(%s) {_RETURNING}"
        )
        row = conn.execute(q, (*args, job_id, allowed)).fetchone()
        return _job(row) if row else None

    def _close_attempt(self, conn: psycopg.Connection[dict[str, Any]], job: Job, error: str | None) -> None:
        conn.execute(
            self._q(
                "UPDATE {ns}.job_attempts SET finished_at = %s, error = %s "
                "WHERE job_id = %s AND number = %s AND finished_at IS NULL"
            ),
            (job.updated_at, error, job.id, job.attempts),
        )

    def start_many(
        self, starts: Sequence[tuple[UUID, bool]], worker: str, here: RanOn | None = None
    ) -> list[Job | None]:
        """One statement claims every job that may start and records their attempts: one round trip, atomic
        without a transaction (the attempts' INSERT is a data-modifying WITH on the claimed rows)."""
        if not starts:
            return []
        q = self._q(
            "WITH started AS (UPDATE {ns}.jobs SET status = 'RUNNING', started_at = clock_timestamp(), "
            "finished_at = NULL, attempts = attempts + 1, worker = %s, version = version + 1, "
            "updated_at = clock_timestamp() WHERE id = ANY(%s) "
            f"AND (status IN ('PENDING', 'RETRYING') OR (status = 'RUNNING' AND id = ANY(%s))) {_RETURNING}), "
            "attempt AS (INSERT INTO {ns}.job_attempts (job_id, number, worker, started_at, node, executor) "
            "SELECT id, attempts, %s, started_at, %s, %s FROM started) "
            f"SELECT {_COLUMNS} FROM started"
        )
        ids = [job_id for job_id, _ in starts]
        reruns = [job_id for job_id, rerun in starts if rerun]
        with self._conn() as conn:
            rows = conn.execute(q, (worker, ids, reruns, worker, *ran_on_columns(here))).fetchall()
        return first_only(ids, {row["id"]: _job(row) for row in rows})

    def finish_many(self, finishes: Sequence[Finish]) -> list[Job | None]:
        """Successes in one statement (which also closes their attempts); failures, rarer, one by one, in the
        same transaction. A batch of successes only is that one statement: atomic without a transaction.

        A job's first finish in the batch is the one that counts, as if they ran in order: a later one finds
        the job no longer RUNNING and gets None (one UPDATE … FROM with a repeated id would pick either row).
        """
        if not finishes:
            return []
        firsts = first_mentions([f.job_id for f in finishes])
        completes = [f for f, first in zip(finishes, firsts, strict=True) if first and f.error is None]
        with self._conn() as conn:
            if len(completes) == sum(firsts):
                done = self._complete_all(conn, completes)
                return [done.get(f.job_id) if first else None for f, first in zip(finishes, firsts, strict=True)]
            with conn.transaction():
                done = self._complete_all(conn, completes)
                return [
                    None if not first else done.get(f.job_id) if f.error is None else self._fail(conn, f)
                    for f, first in zip(finishes, firsts, strict=True)
                ]

    def _complete_all(self, conn: psycopg.Connection[dict[str, Any]], completes: Sequence[Finish]) -> dict[UUID, Job]:
        if not completes:
            return {}
        q = self._q(
            "WITH done AS (UPDATE {ns}.jobs AS j SET status = 'COMPLETED', result = v.result, error = NULL, "
            "finished_at = clock_timestamp(), version = j.version + 1, updated_at = clock_timestamp() "
            "FROM unnest(%s::uuid[], %s::jsonb[]) AS v(id, result) WHERE j.id = v.id AND j.status = 'RUNNING' "
            f"RETURNING {', '.join(f'j.{c.strip()}' for c in _COLUMNS.split(','))}), "
            "closed AS (UPDATE {ns}.job_attempts AS a SET finished_at = d.updated_at, error = NULL FROM done AS d "
            "WHERE a.job_id = d.id AND a.number = d.attempts AND a.finished_at IS NULL RETURNING a.job_id) "
            f"SELECT {_COLUMNS}, EXISTS (SELECT 1 FROM closed WHERE closed.job_id = done.id) AS closed FROM done"
        )
        rows = conn.execute(q, ([f.job_id for f in completes], [Jsonb(f.result) for f in completes])).fetchall()
        done: dict[UUID, Job] = {}
        for row in rows:
            closed = row.pop("closed")
            job = done[row["id"]] = _job(row)
            if not closed:
                # Its attempt was started by a rerun that committed while this statement waited for the job's
                # row: the statement's snapshot cannot see that attempt, a statement of its own can.
                self._close_attempt(conn, job, None)
        return done

    def _fail(self, conn: psycopg.Connection[dict[str, Any]], f: Finish) -> Job | None:
        error = f.error or ""
        job = self._transition(
            conn,
            f"status = {fail_status('%s')}, error = %s, finished_at = clock_timestamp()",
            f.job_id,
            ["RUNNING"],
            f.dead_letter,
            f.retry,
            error,
            f.retry,
            f.dead_letter,
            bump=FAIL_BUMP.format(ph="%s"),
        )
        if job is not None:
            self._close_attempt(conn, job, error)
            if job.status is JobStatus.DEAD_LETTERED:
                self._insert_dead_letter(conn, job.id, job.type, error, job.model_dump_json(exclude={"result"}))
        return job

    def cancel(self, job_id: UUID) -> Job | None:
        with self._conn() as conn, conn.transaction():
            job = self._transition(
                conn,
                "status = 'CANCELLED', finished_at = clock_timestamp()",
                job_id,
                ["PENDING", "RETRYING", "RUNNING"],
            )
            if job is not None:
                self._close_attempt(conn, job, "cancelled")
        return job

    def requeue(self, job_id: UUID) -> Job | None:
        with self._conn() as conn, conn.transaction():
            job = self._transition(
                conn,
                "status = 'PENDING', attempt_limit = attempts + max_attempts, error = NULL, "
                "result = NULL, finished_at = NULL, published = false",
                job_id,
                ["DEAD_LETTERED"],
            )
            if job is not None:
                conn.execute(self._q("DELETE FROM {ns}.dead_letters WHERE job_id = %s"), (job_id,))
        return job

    def attempts(self, job_id: UUID) -> list[Attempt]:
        with self._conn() as conn:
            rows = conn.execute(
                self._q(
                    "SELECT number, worker, started_at, finished_at, error, node, executor, waiting "
                    "FROM {ns}.job_attempts "
                    "WHERE job_id = %s ORDER BY number"
                ),
                (job_id,),
            ).fetchall()
        return [Attempt.model_validate(r) for r in rows]

    def note_attempt(self, job_id: UUID, number: int, note: AttemptNote) -> None:
        sql, args = attempt_note_sql("{ns}.job_attempts", job_id, number, note, "%s")
        with self._conn() as conn:
            conn.execute(self._q(sql), args)

    def _insert_dead_letter(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        job_id: UUID | None,
        job_type: str | None,
        reason: str,
        message: str,
    ) -> None:
        conn.execute(
            self._q(
                "INSERT INTO {ns}.dead_letters (id, job_id, job_type, reason, message) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING"
            ),
            (uuid.uuid4(), job_id, job_type, reason[:MAX_TEXT], message[:MAX_TEXT]),
        )

    def dead_letter(self, job_id: UUID | None, job_type: str | None, reason: str, message: str) -> None:
        with self._conn() as conn, conn.transaction():
            self._insert_dead_letter(conn, job_id, job_type, reason, message)

    def dead_letters(self, limit: int, cursor: str | None) -> DeadLetterPage:
        where, args = "true", []
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            where, args = "(created_at, id) < (%s, %s)", [created_at, last_id]
        q = self._q(
            "SELECT id, job_id, job_type, reason, message, created_at FROM {ns}.dead_letters "
            f"WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %s"
        )
        with self._conn() as conn:
            rows = conn.execute(q, (*args, limit + 1)).fetchall()
        items = [DeadLetter.model_validate(r) for r in rows[:limit]]
        return DeadLetterPage(items=items, next_cursor=next_cursor(items, len(rows), limit))

    def dead_letter_count(self) -> int:
        with self._conn() as conn:
            return int(conn.execute(self._q("SELECT count(*) AS n FROM {ns}.dead_letters")).fetchone()["n"])

    def unfinished(self) -> int:
        with self._conn() as conn:
            q = self._q("SELECT count(*) AS n FROM {ns}.jobs WHERE status IN ('PENDING', 'RETRYING')")
            return int(conn.execute(q).fetchone()["n"])

    def oldest_pending(self) -> datetime | None:
        with self._conn() as conn:
            q = self._q("SELECT min(updated_at) AS at FROM {ns}.jobs WHERE status = 'PENDING'")
            at: datetime | None = conn.execute(q).fetchone()["at"]
            return at

    def recent_outcomes(self, window_s: float) -> dict[JobStatus, int]:
        q = self._q(
            "SELECT status, count(*) AS n FROM {ns}.jobs WHERE status = ANY(%s) "
            "AND updated_at > clock_timestamp() - make_interval(secs => %s) GROUP BY status"
        )
        with self._conn() as conn:
            rows = conn.execute(q, ([s.value for s in FINAL_STATUSES], window_s)).fetchall()
        return {JobStatus(r["status"]): r["n"] for r in rows}

    def counts(self) -> tuple[Counts, datetime | None]:
        """The rows and the purged tally in one statement (one snapshot: a purge is in one or the other)."""
        q = self._q(
            "SELECT type, status, sum(n)::bigint AS n FROM (SELECT type, status, count(*) AS n FROM {ns}.jobs "
            "GROUP BY type, status UNION ALL SELECT type, status, n FROM {ns}.purged_counts) AS c GROUP BY type, status"
        )
        with self._conn() as conn:
            rows = conn.execute(q).fetchall()
            last = conn.execute(self._q("SELECT max(updated_at) AS t FROM {ns}.jobs")).fetchone()
        return {(r["type"], JobStatus(r["status"])): r["n"] for r in rows}, (last or {}).get("t")

    def expired(self, cutoff: datetime, limit: int, dead_letters: bool, after: Expired | None) -> list[Expired]:
        keyset, args = ("(finished_at, id) > (%s, %s)", [after.finished_at, after.job_id]) if after else ("true", [])
        q = self._q(
            "SELECT finished_at, id FROM {ns}.jobs WHERE finished_at < %s AND status = ANY(%s) "
            f"AND {keyset} ORDER BY finished_at, id LIMIT %s"
        )
        with self._conn() as conn:
            rows = conn.execute(q, (cutoff, removable(dead_letters), *args, limit)).fetchall()
        return [Expired(r["finished_at"], r["id"]) for r in rows]

    def purge(self, job_ids: Sequence[UUID], cutoff: datetime, dead_letters: bool) -> int:
        """One statement: the delete (attempts and dead letters go by cascade) and the tally's bump."""
        if not job_ids:
            return 0
        q = self._q(
            "WITH gone AS (DELETE FROM {ns}.jobs WHERE id = ANY(%s) AND finished_at < %s AND status = ANY(%s) "
            "RETURNING type, status), bumped AS (INSERT INTO {ns}.purged_counts (type, status, n) "
            "SELECT type, status, count(*) FROM gone GROUP BY type, status "
            "ON CONFLICT (type, status) DO UPDATE SET n = purged_counts.n + excluded.n) "
            "SELECT count(*) AS n FROM gone"
        )
        with self._conn() as conn, conn.transaction():
            return int(conn.execute(q, (list(job_ids), cutoff, removable(dead_letters))).fetchone()["n"])

    def purged_counts(self) -> Counts:
        with self._conn() as conn:
            rows = conn.execute(self._q("SELECT type, status, n FROM {ns}.purged_counts")).fetchall()
        return {(r["type"], JobStatus(r["status"])): r["n"] for r in rows}
