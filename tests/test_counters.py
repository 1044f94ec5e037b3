"""Counters conformance: every implementation of `Counters` must pass these."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis

from contracts import Alert, EventEnvelope, Job, JobStatus, Severity, Stats, TypeStats
from observatory.adapters import sqlite_counters
from observatory.adapters.redis import MAX_EVENTS_PER_CALL, RedisCounters
from observatory.adapters.sqlite_counters import SQLiteCounters
from observatory.events import job_events, producer
from observatory.ports import Counters
from tests.helpers import scratch, wait_for
from tests.test_event_store import T0, lifecycle

S = JobStatus
# How far each transition moves a job's version in the job store: a failed attempt that retries or
# dead-letters is two events (job.failed, then job.retrying/job.dead_lettered).
VERSION_STEP = {
    S.PENDING: 1,
    S.RUNNING: 1,
    S.COMPLETED: 1,
    S.FAILED: 1,
    S.CANCELLED: 1,
    S.RETRYING: 2,
    S.DEAD_LETTERED: 2,
}


@pytest.fixture(params=["redis", "sqlite"])
def counters(request, settings, tmp_path) -> Counters:
    # A namespace (or file) of its own per test: counters are global to a namespace.
    if request.param == "redis":
        c = RedisCounters(settings.redis_url, scratch(f"{settings.namespace}_{uuid.uuid4().hex[:6]}"))
    else:
        c = SQLiteCounters(tmp_path / "counters.sqlite3")
    c.setup()
    assert c.finish_rebuild(c.begin_rebuild(30))  # complete, as after the read model's first rebuild
    return c


def history(job_type: str, *statuses: JobStatus) -> list[EventEnvelope]:
    """The events of a new job that then went through `statuses`, as the processor emits them."""
    job = Job(id=uuid.uuid4(), type=job_type, status=S.PENDING, payload={}, created_at=T0, correlation_id="c")
    events = job_events(job, producer("test"))
    for step, status in enumerate(statuses, 1):
        job = job.model_copy(
            update={
                "status": status,
                "version": job.version + VERSION_STEP[status],
                "updated_at": T0 + timedelta(seconds=step),
            }
        )
        events += job_events(job, producer("test"))
    return events


def alert(name: str, summary: str = "") -> Alert:
    return Alert(name=name, severity=Severity.WARNING, summary=summary or name, since=T0, source="alertmanager")


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


@pytest.mark.parametrize(
    ("statuses", "field"),
    [
        ((S.CANCELLED,), "cancelled"),
        ((S.RUNNING, S.CANCELLED), "cancelled"),
        ((S.RUNNING, S.RETRYING), "retrying"),
        ((S.RUNNING, S.RETRYING, S.CANCELLED), "cancelled"),
        ((S.RUNNING, S.FAILED), "failed"),
        ((S.RUNNING, S.RETRYING, S.RUNNING, S.DEAD_LETTERED), "dead_lettered"),
        ((S.RUNNING, S.DEAD_LETTERED, S.PENDING), "pending"),
        ((S.RUNNING, S.DEAD_LETTERED, S.PENDING, S.RUNNING, S.COMPLETED), "completed"),
    ],
    ids=[
        "cancelled-pending",
        "cancelled-running",
        "retrying",
        "cancelled-retrying",
        "failed",
        "dead-lettered",
        "requeued",
        "requeued-then-completed",
    ],
)
def test_a_job_is_counted_once_under_its_last_status(counters, statuses, field):
    events = history("hash", *statuses)
    for e in events:
        counters.apply(e)

    s = counters.stats()

    assert s == Stats(
        total_jobs=1,
        by_type={"hash": TypeStats(total=1, **{field: 1})},
        last_event_at=events[-1].occurred_at,
        source="cache",
        **{field: 1},
    )


def test_jobs_of_several_types_and_outcomes_are_counted_exactly(counters):
    jobs = [
        history("hash"),
        history("hash", S.RUNNING),
        history("hash", S.RUNNING, S.COMPLETED),
        history("hash", S.RUNNING, S.COMPLETED),
        history("primes", S.RUNNING, S.RETRYING),
        history("primes", S.RUNNING, S.FAILED),
        history("primes", S.RUNNING, S.DEAD_LETTERED),
        history("primes", S.RUNNING, S.DEAD_LETTERED, S.PENDING),
        history("sleep", S.CANCELLED),
    ]
    for events in jobs:
        for e in events:
            counters.apply(e)

    s = counters.stats()

    assert s == Stats(
        total_jobs=9,
        pending=2,
        running=1,
        retrying=1,
        completed=2,
        failed=1,
        dead_lettered=1,
        cancelled=1,
        by_type={
            "hash": TypeStats(total=4, pending=1, running=1, completed=2),
            "primes": TypeStats(total=4, pending=1, retrying=1, failed=1, dead_lettered=1),
            "sleep": TypeStats(total=1, cancelled=1),
        },
        last_event_at=max(e.occurred_at for events in jobs for e in events),
        source="cache",
    )


def test_no_alerts_before_any_are_set(counters):
    assert counters.alerts() == []


def test_firing_alerts_are_stored_by_fingerprint(counters):
    counters.set_alerts({"fp-a": alert("A"), "fp-b": alert("B")}, [])

    counters.set_alerts({"fp-a": alert("A", "still firing")}, [])

    assert sorted(counters.alerts(), key=lambda a: a.name) == [alert("A", "still firing"), alert("B")]


def test_resolved_alerts_are_forgotten(counters):
    counters.set_alerts({"fp-a": alert("A"), "fp-b": alert("B")}, [])

    counters.set_alerts({}, ["fp-a", "fp-unknown"])

    assert counters.alerts() == [alert("B")]


def test_alerts_do_not_count_as_stats(counters):
    counters.set_alerts({"fp-a": alert("A")}, [])

    assert counters.stats() is None


def test_a_batch_counts_like_the_same_events_one_by_one(counters):
    first, second = lifecycle(uuid.uuid4(), "hash"), lifecycle(uuid.uuid4(), "primes")

    counted = counters.apply_many([*first, *second, first[0]])

    assert counted == [True] * 6 + [False]
    s = counters.stats()
    assert (s.total_jobs, s.completed, s.running, s.pending) == (2, 2, 0, 0)
    assert counters.apply_many([]) == []


def test_a_batch_out_of_order_converges_and_keeps_its_newest_event_time(counters):
    created, started, completed = lifecycle(uuid.uuid4(), "primes")
    other = lifecycle(uuid.uuid4(), "hash")

    counted = counters.apply_many([completed, *other[:2], started, created])

    assert counted == [True, True, True, False, False]  # older versions of a counted job count no more
    s = counters.stats()
    assert (s.total_jobs, s.pending, s.running, s.completed) == (2, 0, 1, 1)
    assert s.last_event_at == max(e.occurred_at for e in (completed, *other[:2], started, created))


def test_a_batch_larger_than_one_script_call_counts_each_event_once(counters):
    # Redis counts a batch in calls of up to MAX_EVENTS_PER_CALL events: the repeats of the first job's events
    # come in a later call than the events themselves.
    jobs = [lifecycle(uuid.uuid4(), "hash") for _ in range(MAX_EVENTS_PER_CALL // 3 + 10)]
    events = [e for job in jobs for e in job]
    assert len(events) > MAX_EVENTS_PER_CALL

    counted = counters.apply_many([*events, *jobs[0]])

    assert counted == [True] * len(events) + [False] * len(jobs[0])
    s = counters.stats()
    assert (s.total_jobs, s.completed, s.running, s.pending) == (len(jobs), len(jobs), 0, 0)


def test_redis_counting_goes_on_after_the_server_forgot_its_scripts(settings):
    """A restarted or flushed Redis no longer holds the counting script: the next batch loads it again and
    is counted, with no error for the aggregator."""
    c = RedisCounters(settings.redis_url, scratch(f"{settings.namespace}_{uuid.uuid4().hex[:6]}"))
    assert c.finish_rebuild(c.begin_rebuild(30))
    events = lifecycle(uuid.uuid4(), "hash")
    assert c.apply_many(events[:1]) == [True]

    redis.Redis.from_url(settings.redis_url).script_flush()

    assert c.apply_many(events[1:]) == [True] * (len(events) - 1)
    s = c.stats()
    assert (s.total_jobs, s.completed) == (1, 1)


def test_the_token_bucket_lets_a_burst_through_then_the_rate(counters):
    bucket = f"k{uuid.uuid4().hex[:6]}"
    assert [counters.take(bucket, 1.0, 3, 1) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = counters.take(bucket, 1.0, 3, 1)
    assert 0.5 < wait <= 1.0  # one token comes back per second
    assert counters.take(bucket, 1.0, 3, 1) > 0  # a refused take costs nothing, and takes nothing
    assert counters.take(f"{bucket}x", 1.0, 3, 1) == 0.0  # another bucket is unaffected


def test_many_takes_in_one_call_go_in_turn_and_a_refused_one_takes_nothing(counters):
    bucket = f"k{uuid.uuid4().hex[:6]}"
    waits = counters.take_many(bucket, 1.0, 3, [2, 2, 1])
    assert waits[0] == 0.0 and 0.5 < waits[1] <= 1.0 and waits[2] == 0.0  # 3 - 2, refused (1 < 2), 1 - 1
    assert counters.take(bucket, 1.0, 3, 1) > 0  # all three tokens are gone, none came back for the refused one


def test_a_cost_above_the_burst_passes_on_a_full_bucket_and_leaves_a_debt(counters):
    bucket = f"k{uuid.uuid4().hex[:6]}"
    assert counters.take(bucket, 10.0, 5, 20) == 0.0
    wait = counters.take(bucket, 10.0, 5, 1)
    assert 1.5 < wait <= 1.6  # 15 tokens of debt plus the one asked for, at 10 per second


def test_stats_are_withheld_until_a_rebuild_completes(counters):
    event = history("hash")[0]
    counters.apply(event)
    assert counters.complete() and counters.stats().total_jobs == 1
    token = counters.begin_rebuild(30)  # starts from nothing
    assert not counters.complete() and counters.stats() is None  # readers use the job store meanwhile
    counters.apply(event)  # what the replay does
    assert counters.finish_rebuild(token)
    assert counters.stats().total_jobs == 1


def test_one_rebuild_at_a_time_and_an_overtaken_one_does_not_mark_complete(counters):
    first = counters.begin_rebuild(30)
    assert counters.begin_rebuild(30) is None  # its lease is alive: no second rebuild
    counters.renew_rebuild(first, 30)
    assert counters.finish_rebuild(first) and counters.complete()
    dead = counters.begin_rebuild(0.05)  # a rebuilder that stops renewing: its lease runs out
    second = wait_for(lambda: counters.begin_rebuild(30), "the dead rebuild's lease to run out", 5)
    assert not counters.finish_rebuild(dead)
    assert counters.finish_rebuild(second)
    third = counters.begin_rebuild(30)
    counters.reset()
    if isinstance(counters, RedisCounters):  # a wipe: the generation goes with the keys
        counters._r.delete(counters._generation)
    else:
        with counters._db.write() as conn:
            conn.execute("DELETE FROM meta WHERE key = 'generation'")
    assert not counters.finish_rebuild(third) and not counters.complete()


def test_reset_forgets_counts_and_seen_events(counters):
    event = history("hash")[0]
    counters.apply(event)
    counters.reset()
    assert not counters.complete() and counters.stats() is None
    assert counters.apply(event)  # seen again: counted again, once
    assert counters.apply(event) is False
    with_mark = counters.begin_rebuild(30)
    assert counters.stats() is None
    counters.apply(event)
    assert counters.finish_rebuild(with_mark)
    assert counters.stats().total_jobs == 1


# Long enough that the states just written are still there when the test first counts them on a loaded CI host
# (at 1 s, CI once counted fewer than the four just applied), short enough to wait out.
SHORT_TTL_S = 3


@pytest.fixture(params=["redis", "sqlite"])
def short_lived(request, settings, tmp_path, monkeypatch) -> Counters:
    """Counters that keep a finished job's state for SHORT_TTL_S seconds."""
    monkeypatch.setattr(sqlite_counters, "PURGE_EVERY_S", 0.0)
    if request.param == "redis":
        c: Counters = RedisCounters(
            settings.redis_url, scratch(f"{settings.namespace}_{uuid.uuid4().hex[:6]}"), SHORT_TTL_S
        )
    else:
        c = SQLiteCounters(tmp_path / "counters.sqlite3", final_ttl_s=SHORT_TTL_S)
    c.setup()
    assert c.finish_rebuild(c.begin_rebuild(30))
    return c


def remembered(c: Counters) -> int:
    """How many jobs the cache holds a state for."""
    if isinstance(c, RedisCounters):
        return len(list(c._r.scan_iter(f"{c._job}*")))
    with c._db.read() as conn:
        return conn.execute("SELECT count(*) FROM job_state").fetchone()[0]


def test_only_jobs_that_can_still_change_are_remembered(short_lived):
    finished = history("hash", S.RUNNING, S.COMPLETED) + history("hash", S.CANCELLED)
    open_ = history("hash", S.RUNNING) + history("hash", S.RUNNING, S.DEAD_LETTERED)  # a requeue may follow
    short_lived.apply_many(finished + open_)
    assert remembered(short_lived) == 4
    wait_for(
        lambda: (short_lived.apply_many([]) or True) and remembered(short_lived) == 2,
        "finished states gone",
        4 * SHORT_TTL_S,
    )
    s = short_lived.stats()
    assert (s.total_jobs, s.completed, s.cancelled, s.running, s.dead_lettered) == (4, 1, 1, 1, 1)  # still counted
    later = history("hash", S.RUNNING, S.COMPLETED)
    short_lived.apply_many(later[:1])
    short_lived.apply_many(later[:1])  # a redelivery of a job still remembered: once
    assert short_lived.stats().total_jobs == 5


def test_an_old_data_dir_is_upgraded_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "counters.sqlite3"
    with sqlite3.connect(path) as conn:  # the 0.1.0 tables
        conn.executescript(
            "CREATE TABLE seen (event_id TEXT PRIMARY KEY);"
            "CREATE TABLE job_state (job_id TEXT PRIMARY KEY, version INTEGER NOT NULL, type TEXT NOT NULL,"
            " status TEXT NOT NULL);"
            "INSERT INTO job_state VALUES ('j', 1, 'hash', 'RUNNING');"
        )
    c = SQLiteCounters(path)
    c.setup()  # the old rows are readable; the first rebuild starts from nothing
    assert remembered(c) == 1
    assert c.finish_rebuild(c.begin_rebuild(30))
    c.apply_many(history("hash", S.RUNNING))
    assert c.stats().total_jobs == 1 and remembered(c) == 1
