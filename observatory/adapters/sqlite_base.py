"""What every embedded (SQLite) adapter shares: one file, a connection per thread, WAL, and
`BEGIN IMMEDIATE` write transactions, so several processes (Serve replicas, actors) use it safely."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from observatory.errors import BackendUnavailable

if TYPE_CHECKING:
    from observatory.schema import Target

BUSY_TIMEOUT_MS = 30_000  # writers from other processes queue for at most this long


def to_us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def from_us(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


def now_us() -> int:
    return to_us(datetime.now(UTC))


def marks(values: Sequence[object]) -> str:
    """One `?` per value, for `IN (...)`."""
    return ",".join("?" * len(values))


def json_ids(ids: Sequence[UUID | str]) -> str:
    """Ids as one JSON array: a single parameter for `IN (SELECT value FROM json_each(?))`."""
    return json.dumps([str(i) for i in ids])


class SQLiteFile:
    """A SQLite database file used from many threads and processes."""

    def __init__(self, path: Path, target: Target, unavailable: type[BackendUnavailable]) -> None:
        self.path = path
        self._target = target
        self._unavailable = unavailable
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn()
        except sqlite3.Error as e:
            raise self._unavailable(f"SQLite {self.path}: {e}") from e

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: it takes the write lock up front, so read-then-write is atomic."""
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise self._unavailable(f"SQLite {self.path}: {e}") from e

    def setup(self) -> None:
        """Bring the file's schema to the newest migration (see observatory.schema)."""
        import sqlalchemy.exc  # with Alembic: only where a store is set up

        from observatory.schema import migrate_sqlite

        try:
            migrate_sqlite(self.path, self._target)
        except (sqlite3.Error, sqlalchemy.exc.DBAPIError, OSError) as e:
            raise self._unavailable(f"SQLite {self.path}: {e}") from e

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()
