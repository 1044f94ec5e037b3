"""Fixtures for the unit tests: real embedded (SQLite) stores in a temporary folder, no servers."""

from __future__ import annotations

import pytest

from observatory.adapters.sqlite_counters import SQLiteCounters
from observatory.adapters.sqlite_events import SQLiteEventStore
from observatory.adapters.sqlite_jobs import SQLiteJobStore
from tests.unit.fakes import RecordingBus


@pytest.fixture
def jobs(tmp_path) -> SQLiteJobStore:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    store.setup()
    yield store
    store.close()


@pytest.fixture
def events(tmp_path) -> SQLiteEventStore:
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    store.setup()
    yield store
    store.close()


@pytest.fixture
def counters(tmp_path) -> SQLiteCounters:
    store = SQLiteCounters(tmp_path / "counters.sqlite3")
    store.setup()
    yield store
    store.close()


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()
