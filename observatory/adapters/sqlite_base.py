"""What every embedded (SQLite) adapter shares: one file, a connection per thread, WAL, and
`BEGIN IMMEDIATE` write transactions, so several processes (Serve replicas, actors) use it safely."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from observatory.errors import BackendUnavailable
from observatory.private_tmp import private_folder

if TYPE_CHECKING:
    from observatory.schema import Target

BUSY_TIMEOUT_MS = 30_000  # writers from other processes queue for at most this long
LOCK_POLL_S = (0.00005, 0.001)  # a writer waiting for the file's writer lock looks again this often (from, up to)
_holding = threading.local()  # whether this thread holds a writer lock (of any file) now


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


def _locked(e: BaseException) -> bool:
    return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)


@retry(
    retry=retry_if_exception(_locked),
    wait=wait_exponential(multiplier=0.005, max=0.5),
    stop=stop_after_delay(BUSY_TIMEOUT_MS / 1000),
    reraise=True,
)
def _wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (a no-op once it is). Switching needs the file to itself, and SQLite answers
    "database is locked" at once, without its busy wait, to one of two connections that switch at the same
    moment (the first connections of a fresh file's threads and processes): that one tries again."""
    conn.execute("PRAGMA journal_mode = WAL")


def _lock_path(db: Path) -> Path:
    """The lock file of a database: in this user's private temporary folder, not beside the data."""
    folder = private_folder() / "sqlite-locks"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{hashlib.sha256(str(db.resolve()).encode()).hexdigest()[:24]}.lock"


def _lock(fd: int, timeout_s: float) -> bool:
    """Take the lock file (exclusive), looking again every LOCK_POLL_S; TimeoutError after `timeout_s`, and
    False when the lock file cannot be used at all (the caller goes on without it)."""
    deadline, wait = time.monotonic() + timeout_s, LOCK_POLL_S[0]
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError from None
            time.sleep(wait)
            wait = min(wait * 2, LOCK_POLL_S[1])
        except OSError:
            return False


class SQLiteFile:
    """A SQLite database file used from many threads and processes."""

    def __init__(self, path: Path, target: Target, unavailable: type[BackendUnavailable]) -> None:
        self.path = path
        self._target = target
        self._unavailable = unavailable
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._writer = threading.Lock()  # this process's writers take turns (see `_queued`)
        self._fd: int | None = None  # the lock file, shared by this process's writers (one at a time)
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                _wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error:
                conn.close()
                raise
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
            with self._queued():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise self._unavailable(f"SQLite {self.path}: {e}") from e

    @contextlib.contextmanager
    def _queued(self) -> Iterator[None]:
        """Writers take turns before SQLite's own lock: the threads of a process on a lock, the processes on
        an advisory lock file. SQLite alone makes a writer that finds the file locked sleep 1, 2, 5, 10, 15,
        20, 25 ms... between tries, so busy writers wait far longer than the transactions they wait for; here
        the next writer goes within a millisecond. SQLite's lock still decides: a writer that cannot use the
        lock file goes on without it, and one that already holds another file's turn (a nested write) does
        not queue, so no two threads ever wait for each other's turns. No turn within the busy timeout is the
        adapter's error, as SQLite's own "database is locked" would be."""
        if getattr(_holding, "now", False):
            yield
            return
        busy_s = BUSY_TIMEOUT_MS / 1000
        deadline = time.monotonic() + busy_s
        if not self._writer.acquire(timeout=busy_s):
            raise self._unavailable(f"SQLite {self.path}: no turn to write within {busy_s:.0f} s")
        try:
            fd = self._lock_fd()
            try:
                locked = fd is not None and _lock(fd, deadline - time.monotonic())
            except TimeoutError:
                raise self._unavailable(f"SQLite {self.path}: another process held it for {busy_s:.0f} s") from None
            _holding.now = True
            try:
                yield
            finally:
                _holding.now = False
                if locked:
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        finally:
            self._writer.release()

    def _lock_fd(self) -> int | None:
        """This process's descriptor of the lock file (opened once, closed with the object), or None."""
        if self._fd is None:
            try:
                fd = os.open(_lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
            except (OSError, RuntimeError):  # RuntimeError: an unsafe private folder (see private_tmp)
                return None
            self._fd = fd
            weakref.finalize(self, os.close, fd)
        return self._fd

    def setup(self) -> None:
        """Bring the file's schema to the newest migration (see observatory.schema)."""
        import sqlalchemy.exc  # with Alembic: only where a store is set up

        from observatory.schema import migrate_sqlite

        try:
            migrate_sqlite(self.path, self._target)
        except (sqlite3.Error, sqlalchemy.exc.DBAPIError, OSError) as e:
            raise self._unavailable(f"SQLite {self.path}: {e}") from e
        with self.read():
            pass  # this thread's connection puts the file in WAL mode now, before other threads open theirs

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
