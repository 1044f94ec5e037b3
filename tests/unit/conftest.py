"""Fixtures for the unit tests: real embedded (SQLite) stores in a temporary folder, no servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from observatory.adapters.sqlite_counters import SQLiteCounters
from observatory.adapters.sqlite_events import SQLiteEventStore
from observatory.adapters.sqlite_jobs import SQLiteJobStore
from tests.unit.fakes import RecordingBus


def _opened(store: Any) -> Iterator[Any]:
    """A real embedded adapter, set up, closed after the test."""
    store.setup()
    yield store
    store.close()


@pytest.fixture
def jobs(tmp_path) -> Iterator[SQLiteJobStore]:
    yield from _opened(SQLiteJobStore(tmp_path / "jobs.sqlite3"))


@pytest.fixture
def events(tmp_path) -> Iterator[SQLiteEventStore]:
    yield from _opened(SQLiteEventStore(tmp_path / "events.sqlite3"))


@pytest.fixture
def counters(tmp_path) -> Iterator[SQLiteCounters]:
    """Counters marked complete, as after the read model's first (empty) rebuild."""
    c = SQLiteCounters(tmp_path / "counters.sqlite3")
    c.setup()
    assert c.finish_rebuild(c.begin_rebuild(30))
    yield c
    c.close()


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()
