"""Embedded stats counters: the same count-once rule as the Redis script, in one SQLite transaction."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from contracts import Alert, EventEnvelope, JobStatus, Stats
from observatory.adapters.sqlite_base import SQLiteFile, from_us, to_us
from observatory.counting import FINAL, FINAL_STATE_TTL_S, final_state_ttl
from observatory.errors import CacheUnavailable
from observatory.ports import Counts

_BUMP = "INSERT INTO counts (type, status, n) VALUES (?, ?, ?) ON CONFLICT (type, status) DO UPDATE SET n = n + ?"


PURGE_EVERY_S = 60.0  # expired job states are deleted at most this often


class SQLiteCounters:
    """The same count-once rule and state lifetime as the Redis counters (see observatory.counting)."""

    def __init__(self, path: Path, final_ttl_s: int = FINAL_STATE_TTL_S) -> None:
        self._db = SQLiteFile(path, "sqlite_counters", CacheUnavailable)
        self._ttl = final_ttl_s
        self._purged = time.monotonic()

    def setup(self) -> None:
        self._db.setup()

    def apply(self, event: EventEnvelope) -> bool:
        return self.apply_many([event])[0]

    def apply_many(self, events: Sequence[EventEnvelope]) -> list[bool]:
        now = time.time()
        with self._db.write() as conn:  # one transaction for the batch
            if time.monotonic() - self._purged > PURGE_EVERY_S:
                conn.execute("DELETE FROM job_state WHERE expires < ?", (now,))
                self._purged = time.monotonic()
            return [self._apply(conn, e, now) for e in events]

    def _apply(self, conn: sqlite3.Connection, event: EventEnvelope, now: float) -> bool:
        p = event.payload
        prev = conn.execute("SELECT version, type, status, expires FROM job_state WHERE job_id = ?", (str(p.job_id),))
        row = prev.fetchone()
        if row is not None and row["expires"] is not None and row["expires"] < now:
            row = None  # expired, as a Redis key would be: not purged yet
        counted = row is None or p.version > row["version"]
        if counted:
            if row is not None:
                conn.execute(_BUMP, (row["type"], row["status"], -1, -1))
            conn.execute(_BUMP, (p.job_type, p.status.value, 1, 1))
            conn.execute(
                "INSERT INTO job_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE "
                "SET version = excluded.version, type = excluded.type, status = excluded.status, "
                "expires = excluded.expires",
                (
                    str(p.job_id),
                    p.version,
                    p.job_type,
                    p.status.value,
                    now + final_state_ttl(self._ttl, event.occurred_at.timestamp(), now) if p.status in FINAL else None,
                ),
            )
        conn.execute(
            "INSERT INTO last_event VALUES (1, ?) ON CONFLICT (id) DO UPDATE "
            "SET occurred_us = max(occurred_us, excluded.occurred_us)",
            (to_us(event.occurred_at),),
        )
        return counted

    def complete(self) -> bool:
        with self._db.read() as conn:
            return conn.execute("SELECT 1 FROM meta WHERE key = 'complete'").fetchone() is not None

    def begin_rebuild(self, lease_s: float, baseline: Counts | None = None) -> str | None:
        token = uuid.uuid4().hex
        with self._db.write() as conn:
            if self._leased(conn):
                return None
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (token,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('lease', ?)", (f"{token}|{time.time() + lease_s}",))
            conn.execute("DELETE FROM meta WHERE key = 'complete'")
            self._wipe(conn)
            conn.executemany(_BUMP, [(t, s.value, n, n) for (t, s), n in (baseline or {}).items()])
        return token

    @staticmethod
    def _leased(conn: sqlite3.Connection) -> bool:
        lease = conn.execute("SELECT value FROM meta WHERE key = 'lease'").fetchone()
        return lease is not None and float(lease["value"].split("|")[1]) > time.time()

    def renew_rebuild(self, token: str, lease_s: float) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'lease' AND value LIKE ?",
                (f"{token}|{time.time() + lease_s}", f"{token}|%"),
            )

    def finish_rebuild(self, token: str) -> bool:
        with self._db.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            if row is None or row["value"] != token:
                return False
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('complete', ?)", (token,))
            self._free_lease(conn, token)
            return True

    def abandon_rebuild(self, token: str) -> None:
        with self._db.write() as conn:
            self._free_lease(conn, token)

    @staticmethod
    def _free_lease(conn: sqlite3.Connection, token: str) -> None:
        """Delete the lease if it is still the rebuild `token`'s."""
        conn.execute("DELETE FROM meta WHERE key = 'lease' AND value LIKE ?", (f"{token}|%",))

    def rebuilding(self) -> bool:
        with self._db.read() as conn:
            return self._leased(conn)

    def reset(self) -> None:
        with self._db.write() as conn:
            self._wipe(conn)
            conn.execute("DELETE FROM meta WHERE key = 'complete'")

    @staticmethod
    def _wipe(conn: sqlite3.Connection) -> None:
        for table in ("job_state", "counts", "last_event"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    def stats(self) -> Stats | None:
        with self._db.read() as conn:
            conn.execute("BEGIN")  # one snapshot: the mark and the counts of one moment
            try:
                complete = conn.execute("SELECT 1 FROM meta WHERE key = 'complete'").fetchone() is not None
                rows = conn.execute("SELECT type, status, n FROM counts").fetchall()
                last = conn.execute("SELECT occurred_us FROM last_event WHERE id = 1").fetchone()
            finally:
                conn.execute("COMMIT")
        if not complete or not rows:
            return None
        counts = {(r["type"], JobStatus(r["status"])): r["n"] for r in rows}
        return Stats.from_counts(counts, from_us(last["occurred_us"]) if last else None, "cache")

    def set_alerts(self, firing: dict[str, Alert], resolved: list[str]) -> None:
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO alerts VALUES (?, ?) ON CONFLICT (fingerprint) DO UPDATE SET alert = excluded.alert",
                [(k, a.model_dump_json()) for k, a in firing.items()],
            )
            conn.executemany("DELETE FROM alerts WHERE fingerprint = ?", [(k,) for k in resolved])

    def alerts(self) -> list[Alert]:
        with self._db.read() as conn:
            return [Alert.model_validate_json(r["alert"]) for r in conn.execute("SELECT alert FROM alerts")]

    def take(self, bucket: str, rate_per_s: float, burst: float, cost: float) -> float:
        return self.take_many(bucket, rate_per_s, burst, [cost])[0]

    def take_many(self, bucket: str, rate_per_s: float, burst: float, costs: Sequence[float]) -> list[float]:
        """The Redis script's token bucket in one write transaction; every process shares this file's clock."""
        with self._db.write() as conn:
            now = time.time()
            row = conn.execute("SELECT tokens, at FROM buckets WHERE name = ?", (bucket,)).fetchone()
            tokens = burst if row is None else min(burst, row["tokens"] + max(0.0, now - row["at"]) * rate_per_s)
            waits = []
            for cost in costs:
                need = min(cost, burst)
                if tokens >= need:
                    tokens -= cost
                    waits.append(0.0)
                else:
                    waits.append((need - tokens) / rate_per_s)
            conn.execute(
                "INSERT INTO buckets VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, "
                "at = excluded.at",
                (bucket, tokens, now),
            )
            return waits

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()
