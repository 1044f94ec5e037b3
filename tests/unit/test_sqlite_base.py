"""What every embedded adapter shares (SQLiteFile): a connection per thread, folders made, clean close."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading

import pytest

from observatory.adapters import sqlite_base
from observatory.adapters.sqlite_base import SQLiteFile
from observatory.errors import StoreUnavailable

SCHEMA = "CREATE TABLE IF NOT EXISTS t (n INTEGER);"


@pytest.fixture
def connects(monkeypatch) -> list[int]:
    """Records the thread of every sqlite3.connect the adapters make."""
    made: list[int] = []
    real = sqlite3.connect

    def connect(*args, **kwargs):
        made.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlite_base.sqlite3, "connect", connect)
    return made


def db_at(path) -> SQLiteFile:
    db = SQLiteFile(path, "sqlite_bus", StoreUnavailable)  # the migrations are not what this tests
    with db.write() as conn:
        conn.execute(SCHEMA)
    return db


def in_thread(fn) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join(10)


def test_a_thread_reuses_its_one_connection(tmp_path, connects):
    db = db_at(tmp_path / "db.sqlite3")

    for _ in range(3):
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        with db.read() as conn:
            conn.execute("SELECT count(*) FROM t").fetchone()

    assert connects == [threading.get_ident()]


def test_each_thread_gets_a_connection_of_its_own(tmp_path, connects):
    db = db_at(tmp_path / "db.sqlite3")

    in_thread(db.ping)

    assert len(connects) == 2 and connects[0] != connects[1]


def test_missing_folders_are_made(tmp_path):
    db = db_at(tmp_path / "a" / "b" / "db.sqlite3")

    db.ping()

    assert (tmp_path / "a" / "b" / "db.sqlite3").is_file()


def test_close_releases_the_connections_of_every_thread(tmp_path):
    path = tmp_path / "db.sqlite3"
    db = db_at(path)
    in_thread(db.ping)

    db.close()

    # SQLite removes the write-ahead log when the last connection to the file closes.
    assert not path.with_name(path.name + "-wal").exists()


def test_file_is_usable_again_after_close(tmp_path):
    db = db_at(tmp_path / "db.sqlite3")
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (7)")
    db.close()

    with db.read() as conn:
        assert [tuple(r) for r in conn.execute("SELECT n FROM t")] == [(7,)]


def test_ping_answers_on_a_usable_file(tmp_path):
    db_at(tmp_path / "db.sqlite3").ping()


def test_ping_of_an_unusable_file_is_the_adapter_error(tmp_path):
    with pytest.raises(StoreUnavailable, match="SQLite"):
        SQLiteFile(tmp_path, "sqlite_bus", StoreUnavailable).ping()  # a folder, not a database file


def test_failed_write_is_rolled_back(tmp_path):
    db = db_at(tmp_path / "db.sqlite3")

    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("handler failed mid-transaction")

    with db.read() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def lock_file_taken(db: SQLiteFile) -> bool:
    """Whether some writer holds the database's lock file (tried from a descriptor of our own)."""
    fd = os.open(sqlite_base._lock_path(db.path), os.O_RDWR | os.O_CREAT, 0o600)  # noqa: SLF001
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_writers_take_turns_on_the_files_lock_file(tmp_path):
    db = db_at(tmp_path / "a.sqlite3")
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        during = lock_file_taken(db)
    assert (during, lock_file_taken(db)) == (True, False)


def test_a_writer_of_one_file_does_not_queue_for_another_files_lock_file(tmp_path):
    """Inside a write of file A, a write of file B goes on even while B's lock file is held elsewhere (SQLite's
    own lock decides): a thread never waits for one lock file while it holds another, so none deadlock."""
    a, b = db_at(tmp_path / "a.sqlite3"), db_at(tmp_path / "b.sqlite3")
    held = os.open(sqlite_base._lock_path(b.path), os.O_RDWR | os.O_CREAT, 0o600)  # noqa: SLF001
    fcntl.flock(held, fcntl.LOCK_EX)
    wrote: list[bool] = []

    def nested() -> None:
        with a.write() as conn_a, b.write() as conn_b:
            conn_a.execute("INSERT INTO t VALUES (1)")
            conn_b.execute("INSERT INTO t VALUES (2)")
        wrote.append(True)

    try:
        t = threading.Thread(target=nested, daemon=True)
        t.start()
        t.join(5)
    finally:
        os.close(held)
        a.close()
        b.close()
    assert wrote == [True]


def test_threads_opening_a_fresh_file_at_the_same_moment_all_get_a_connection(tmp_path):
    """The first connections of a file not yet in WAL mode switch it at once; SQLite refuses one of two
    simultaneous switches without waiting, so each is tried again until the file is in WAL mode."""
    threads, rounds = 8, 30
    for r in range(rounds):
        path = tmp_path / f"fresh{r}.sqlite3"
        with sqlite3.connect(path) as conn:  # rollback journal, as a new or restored file is
            conn.execute(SCHEMA)
        conn.close()
        db, errors = SQLiteFile(path, "sqlite_bus", StoreUnavailable), []
        start = threading.Barrier(threads)

        def first_read(db: SQLiteFile = db, errors: list[BaseException] = errors, start=start) -> None:
            start.wait()
            try:
                with db.read() as c:
                    c.execute("SELECT count(*) FROM t").fetchone()
            except BaseException as e:  # noqa: BLE001 - judged in the test's thread
                errors.append(e)

        workers = [threading.Thread(target=first_read) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        db.close()
        assert errors == [], f"round {r}: {errors!r}"
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
