"""Counters conformance: every implementation of `Counters` must pass these."""

from __future__ import annotations

import uuid

import pytest

from observatory.adapters.redis import RedisCounters
from observatory.adapters.sqlite_counters import SQLiteCounters
from observatory.ports import Counters
from tests.test_event_store import lifecycle


@pytest.fixture(params=["redis", "sqlite"])
def counters(request, settings, tmp_path) -> Counters:
    # A namespace (or file) of its own per test: counters are global to a namespace.
    if request.param == "redis":
        c = RedisCounters(settings.redis_url, f"{settings.namespace}_{uuid.uuid4().hex[:6]}")
    else:
        c = SQLiteCounters(tmp_path / "counters.sqlite3")
    c.setup()
    return c


def test_empty_counters_have_no_stats(counters):
    assert counters.stats() is None


def test_lifecycle_counts_one_completed_job(counters):
    for e in lifecycle(uuid.uuid4(), "hash"):
        counters.apply(e)

    s = counters.stats()

    assert (s.total_jobs, s.pending, s.running, s.completed) == (1, 0, 0, 1)
    assert s.by_type["hash"].completed == 1
    assert s.last_event_at == lifecycle(uuid.uuid4())[-1].occurred_at


def test_redelivered_events_are_not_counted_twice(counters):
    events = lifecycle(uuid.uuid4())
    for e in events + events:
        counters.apply(e)

    assert counters.apply(events[0]) is False
    assert counters.stats().total_jobs == 1


def test_out_of_order_events_converge(counters):
    created, started, completed = lifecycle(uuid.uuid4(), "primes")
    for e in (completed, started, created):
        counters.apply(e)

    s = counters.stats()

    assert (s.total_jobs, s.pending, s.running, s.completed) == (1, 0, 0, 1)
