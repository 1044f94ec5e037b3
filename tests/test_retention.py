"""Retention, in both modes (PostgreSQL + MongoDB + Redis, and the embedded SQLite stores): exactly the old
finished jobs leave, with their attempts and events; unfinished and dead-lettered jobs stay; the stats do not
move, and a rebuild from the event store still equals the job store."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from contracts import Job, JobStatus
from observatory import backends, retention
from observatory.adapters.sqlite_base import to_us
from observatory.adapters.sqlite_jobs import SQLiteJobStore
from observatory.backends import Backends
from observatory.events import job_events, producer
from observatory.ports import NewJob
from observatory.replay import replay
from observatory.retention import purge_once
from observatory.settings import Settings
from observatory.views import stats_differences
from tests.cluster import BIN
from tests.helpers import CONNECTIONS, scratch, wait_for
from tests.test_event_store import lifecycle

S = JobStatus
OLD = datetime.now(UTC) - timedelta(days=40)
CUTOFF_AGE = timedelta(days=7)
REMOVED = (S.COMPLETED, S.FAILED, S.CANCELLED)


@pytest.fixture(params=["real", "embedded"])
def stack(request, tmp_path) -> Iterator[Backends]:
    """The job store, event store and counters of one mode, in a namespace (or folder) of their own."""
    if request.param == "real":
        ns = scratch(f"{request.getfixturevalue('settings').namespace}_r{uuid.uuid4().hex[:6]}")
        s = Settings(OBSERVATORY_NAMESPACE=ns, OBSERVATORY_DATA_DIR=tmp_path)
    else:
        s = Settings(OBSERVATORY_NAMESPACE="retention", OBSERVATORY_DATA_DIR=tmp_path, **dict.fromkeys(CONNECTIONS))
    b = backends.build(s)
    for store in (b.jobs, b.events, b.counters):
        store.setup()
    assert b.counters.finish_rebuild(b.counters.begin_rebuild(30))  # complete, as after the first rebuild
    yield b
    b.close()


@dataclass
class Seeded:
    """Jobs by (age, status) and every event they emitted; 'requeued' is a dead letter requeued then completed."""

    jobs: dict[tuple[str, str], UUID] = field(default_factory=dict)

    def ids(self, age: str, *statuses: str) -> list[UUID]:
        return [i for (a, s), i in self.jobs.items() if a == age and s in statuses]


def _steps(b: Backends, job: Job, status: str) -> list[Job | None]:
    """Take a PENDING job to `status` through the store's transitions; the states it passed through."""
    jobs = b.jobs
    if status == S.PENDING:
        return []
    if status == S.CANCELLED:
        return [jobs.cancel(job.id)]
    states = [jobs.start(job.id, "w1", rerun=False)]
    if status == S.COMPLETED:
        states.append(jobs.complete(job.id, {"ok": True}))
    elif status == S.FAILED:
        states.append(jobs.fail(job.id, "bad input", retry=False))
    elif status == S.RETRYING:
        states.append(jobs.fail(job.id, "flaky", retry=True))
    elif status in (S.DEAD_LETTERED, "requeued"):
        states.append(jobs.fail(job.id, "poison", retry=True, dead_letter=True))
    if status == "requeued":
        states += [jobs.requeue(job.id), jobs.start(job.id, "w2", rerun=False), jobs.complete(job.id, 1)]
    return states


def seed(b: Backends) -> Seeded:
    """A job in every status (and a requeued dead letter), old and new, of two types; every event stored and
    counted as the aggregators do. Every old job, unfinished ones included, gets an old `finished_at`, so only
    the status keeps the unfinished ones."""
    seeded = Seeded()
    source = producer("test")
    for age in ("old", "new"):
        for n, status in enumerate([*S, "requeued"]):
            new = NewJob(uuid.uuid4(), ("hash", "sleep")[n % 2], {}, "corr", None, 3, 30.0)
            job = b.jobs.create([new])[0].job
            states = [job, *_steps(b, job, status)]
            assert all(states) and states[-1].status == (S.COMPLETED if status == "requeued" else status)
            events = [e for state in states for e in job_events(state, source)]
            b.events.append_many(events)
            b.counters.apply_many(events)
            seeded.jobs[(age, status)] = job.id
    age_jobs(b, seeded.ids("old", *S, "requeued"), OLD)
    return seeded


def age_jobs(b: Backends, ids: list[UUID], finished_at: datetime) -> None:
    """Set `finished_at` directly in the store, as if the jobs finished then."""
    store: Any = b.jobs
    if isinstance(store, SQLiteJobStore):
        with store._db.write() as conn:
            conn.executemany(
                "UPDATE jobs SET finished_us = ? WHERE id = ?", [(to_us(finished_at), str(i)) for i in ids]
            )
        return
    with store._conn() as conn:
        conn.execute(store._q("UPDATE {ns}.jobs SET finished_at = %s WHERE id = ANY(%s)"), (finished_at, ids))


def cutoff() -> datetime:
    return datetime.now(UTC) - CUTOFF_AGE


def event_count(b: Backends, ids: list[UUID]) -> int:
    return sum(len(b.events.for_job(i)) for i in ids)


def test_only_the_old_finished_jobs_leave_with_their_attempts_and_events(stack):
    seeded = seed(stack)
    gone = seeded.ids("old", *REMOVED, "requeued")
    kept = [i for i in seeded.jobs.values() if i not in gone]
    kept_events = {i: stack.events.for_job(i) for i in kept}
    gone_events = event_count(stack, gone)

    removed = purge_once(stack, cutoff(), batch=2)  # small batches: the keyset paging is exercised too

    assert (removed.jobs, removed.events) == (len(gone), gone_events)
    for i in gone:
        assert stack.jobs.get(i) is None
        assert stack.jobs.attempts(i) == [] and stack.events.for_job(i) == []
    for i in kept:  # every unfinished job, every dead-lettered one, every new one: untouched
        assert stack.jobs.get(i) is not None
        assert stack.events.for_job(i) == kept_events[i]
    assert stack.jobs.attempts(seeded.jobs[("old", S.RETRYING)]) != []
    assert stack.jobs.dead_letter_count() == 2  # the old and the new dead letter


def test_the_stats_do_not_move_and_a_rebuild_still_equals_the_store(stack):
    seed(stack)
    counts, cached = stack.jobs.counts()[0], stack.counters.stats()

    purge_once(stack, cutoff())

    assert stack.jobs.counts()[0] == counts  # removed jobs stay counted (the purged tally)
    assert stack.counters.stats() == cached  # the cache is not touched
    seen, done = replay(stack.events, stack.counters, stack.jobs)
    assert done and seen > 0
    assert stats_differences(stack.counters.stats(), stack.jobs.counts()) == []


def test_a_dry_run_counts_what_a_purge_removes_and_changes_nothing(stack):
    seed(stack)
    before = (stack.jobs.counts()[0], stack.jobs.purged_counts(), sum(len(p) for p in stack.events.scan(1000)))

    dry = purge_once(stack, cutoff(), batch=2, dry_run=True)

    after = (stack.jobs.counts()[0], stack.jobs.purged_counts(), sum(len(p) for p in stack.events.scan(1000)))
    assert after == before
    real = purge_once(stack, cutoff(), batch=2)
    assert (dry.jobs, dry.events) == (real.jobs, real.events) and real.jobs == len(REMOVED) + 1


def test_dead_letters_go_only_when_purged_explicitly(stack):
    seeded = seed(stack)
    old_dead, new_dead = seeded.jobs[("old", S.DEAD_LETTERED)], seeded.jobs[("new", S.DEAD_LETTERED)]
    counts = stack.jobs.counts()[0]

    removed = purge_once(stack, cutoff(), dead_letters=True)

    assert removed.jobs == len(REMOVED) + 2  # and the old dead-lettered job
    assert stack.jobs.get(old_dead) is None and stack.events.for_job(old_dead) == []
    assert [d.job_id for d in stack.jobs.dead_letters(10, None).items] == [new_dead]
    assert stack.jobs.get(seeded.jobs[("old", S.RETRYING)]) is not None
    assert stack.jobs.counts()[0] == counts
    assert replay(stack.events, stack.counters, stack.jobs)[1]
    assert stats_differences(stack.counters.stats(), stack.jobs.counts()) == []


def test_retention_waits_while_the_counters_are_rebuilt(stack):
    seed(stack)
    token = stack.counters.begin_rebuild(30)

    paused = purge_once(stack, cutoff())
    stack.counters.abandon_rebuild(token)
    resumed = purge_once(stack, cutoff())

    assert paused.paused and paused.jobs == 0
    assert not resumed.paused and resumed.jobs == len(REMOVED) + 1


def test_a_rebuild_that_retention_overtakes_gives_up_and_the_next_one_is_right(stack):
    seeded = seed(stack)
    gone = seeded.ids("old", *REMOVED, "requeued")

    def purge_under_it(_seen: int) -> None:  # a purge that looked before the rebuild took its lease
        if stack.jobs.get(gone[0]) is not None:
            stack.events.remove_jobs(gone)
            stack.jobs.purge(gone, cutoff(), dead_letters=False)

    _, done = replay(stack.events, stack.counters, stack.jobs, progress=purge_under_it, page=5)

    assert not done and not stack.counters.complete()
    assert not stack.counters.rebuilding()  # the lease is freed: the next rebuild starts at once
    assert replay(stack.events, stack.counters, stack.jobs)[1]
    assert stats_differences(stack.counters.stats(), stack.jobs.counts()) == []


def test_the_workers_loop_removes_old_jobs_and_reports_each_batch(stack):
    seed(stack)
    batches: list[tuple[int, int]] = []
    stop = threading.Event()
    loop = threading.Thread(
        target=retention.keep, args=(stack, 7, 0.05, stop, lambda j, e: batches.append((j, e))), daemon=True
    )

    loop.start()
    try:
        wait_for(lambda: batches, "a retention pass", 30)
    finally:
        stop.set()
        loop.join(10)

    assert sum(j for j, _ in batches) == len(REMOVED) + 1 and not loop.is_alive()


# --- the new port methods, on their own -------------------------------------------------------------------


def test_a_rebuild_starts_from_its_baseline_and_can_be_abandoned(stack):
    c = stack.counters
    token = c.begin_rebuild(30, {("hash", S.COMPLETED): 3, ("sleep", S.DEAD_LETTERED): 1})
    c.abandon_rebuild("another-token")  # not its lease: kept

    assert c.rebuilding() and c.begin_rebuild(30) is None
    c.abandon_rebuild(token)
    assert not c.rebuilding() and not c.complete()
    assert c.finish_rebuild(c.begin_rebuild(30, {("hash", S.COMPLETED): 3}))
    stats = c.stats()
    assert (stats.total_jobs, stats.completed, stats.by_type["hash"].completed) == (3, 3, 3)


def test_removing_the_events_of_some_jobs_leaves_the_others(stack):
    mine, other = lifecycle(uuid.uuid4()), lifecycle(uuid.uuid4())
    stack.events.append_many(mine + other)
    ids = [mine[0].payload.job_id]

    assert stack.events.count_jobs(ids) == len(mine)
    assert stack.events.remove_jobs(ids) == len(mine)

    assert stack.events.for_job(ids[0]) == [] and stack.events.for_job(other[0].payload.job_id) == other
    assert stack.events.remove_jobs([]) == 0 and stack.events.count_jobs([]) == 0


# --- the command line -------------------------------------------------------------------------------------


def observatory(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "observatory"), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("bad", ["7", "7x", "d", "-1d", "7 d", "999999d"])
def test_purge_refuses_a_bad_duration_with_exit_2(bad):
    r = observatory("purge", "--older-than", bad)

    assert r.returncode == 2
    assert r.stderr == "error: --older-than: expected a duration like 7d or 12h\n"


@pytest.mark.parametrize("short", ["59m", "3599s", "0.5h"])
def test_purge_refuses_an_age_under_an_hour_with_exit_2(short):
    r = observatory("purge", "--older-than", short)

    assert r.returncode == 2 and r.stderr.startswith("error: --older-than: at least 1h"), r


def test_a_retention_age_under_an_hour_is_refused_by_the_settings():
    with pytest.raises(ValidationError, match="at least 1 hour"):
        Settings(OBSERVATORY_RETENTION_DAYS=0.04)
    assert Settings(OBSERVATORY_RETENTION_DAYS=0).retention_days == 0  # off
    assert Settings(OBSERVATORY_RETENTION_DAYS=1 / 24).retention_days == 1 / 24


def test_purge_from_the_command_line_in_embedded_mode(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CONNECTIONS}
    env.update(OBSERVATORY_DATA_DIR=str(tmp_path), OBSERVATORY_NAMESPACE="clipurge")
    b = backends.build(
        Settings(OBSERVATORY_DATA_DIR=tmp_path, OBSERVATORY_NAMESPACE="clipurge", **dict.fromkeys(CONNECTIONS))
    )
    for store in (b.jobs, b.events, b.counters):
        store.setup()
    seeded = seed(b)
    gone = seeded.ids("old", *REMOVED, "requeued")
    events = event_count(b, gone)
    b.close()

    dry = observatory("purge", "--older-than", "7d", "--dry-run", env=env)
    real = observatory("purge", "--older-than", "168h", env=env)

    assert dry.returncode == 0 and dry.stdout.startswith(f"would remove {len(gone)} finished jobs and {events} events")
    assert real.returncode == 0 and real.stdout.startswith(f"removed {len(gone)} finished jobs and {events} events")
