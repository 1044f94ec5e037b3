"""Replay and the cache keeper on the embedded stores: lost counters come back from the event log, and a
cache that disagrees with the job store is noticed, bypassed and rebuilt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from observatory import healing
from observatory.backends import Backends
from observatory.events import job_events, producer
from observatory.healing import Healer
from observatory.replay import replay
from observatory.views import stats_differences
from tests.unit.fakes import RecordingBus, new_job


def pipeline(jobs, events, counters, n: int) -> None:
    """n jobs created and completed, their events stored and counted, as the aggregators do."""
    created = jobs.create([new_job(key=f"k{i}") for i in range(n)])
    for c in created:
        started = jobs.start(c.job.id, "w", False)
        done = jobs.complete(c.job.id, {"ok": True})
        batch = job_events(c.job, producer("t")) + job_events(started, producer("t")) + job_events(done, producer("t"))
        events.append_many(batch)
        counters.apply_many(batch)


def test_replay_after_a_wipe_restores_stats_equal_to_the_store(jobs, events, counters):
    pipeline(jobs, events, counters, 12)
    counters.reset()
    assert counters.stats() is None
    seen, done = replay(events, counters, jobs, page=5)
    assert done and seen == 36
    assert stats_differences(counters.stats(), jobs.counts()) == []
    assert replay(events, counters, jobs, page=5)[1]  # again: the same numbers
    assert counters.stats().completed == 12


def test_the_keeper_rebuilds_lost_counters_without_being_asked(jobs, events, counters):
    pipeline(jobs, events, counters, 5)
    counters.reset()
    keeper = Healer(Backends(RecordingBus(), jobs, events, counters))
    keeper.check()
    assert counters.complete() and keeper.rebuilds == 1
    assert stats_differences(counters.stats(), jobs.counts()) == []


def test_a_cache_counting_more_than_the_store_is_bypassed_then_rebuilt(jobs, events, counters, monkeypatch):
    pipeline(jobs, events, counters, 4)
    jobs_counts = jobs.counts()
    ghost = job_events(jobs.create([new_job(key="ghost")])[0].job, producer("t"))
    counters.apply_many(ghost)  # counted, and never stored in the event log: a count from nowhere
    monkeypatch.setattr(jobs, "counts", lambda: jobs_counts)  # and the store does not have the job either
    keeper = Healer(Backends(RecordingBus(), jobs, events, counters))
    keeper.check()
    assert keeper.diverged and keeper.rebuilds == 0  # noticed; readers now use the store
    monkeypatch.setattr(healing, "DIVERGED_FOR_S", 0.0)
    monkeypatch.setattr(healing, "COMPARE_EVERY_S", 0.0)
    keeper.check()
    assert keeper.rebuilds == 1
    assert stats_differences(counters.stats(), jobs_counts) == []  # rebuilt from the event log alone
    keeper.check()
    assert not keeper.diverged  # they agree again: the cache is served again
    keeper.check()
    assert keeper.rebuilds == 1


def test_a_cache_that_lost_counts_but_kept_its_mark_is_noticed(jobs, events, counters, monkeypatch):
    pipeline(jobs, events, counters, 6)
    with counters._db.write() as conn:
        conn.execute("DELETE FROM counts")  # the mark survives: only the comparison can tell
    monkeypatch.setattr(healing, "LAG_S", 0.0)
    keeper = Healer(Backends(RecordingBus(), jobs, events, counters))
    keeper.check()
    keeper.check()
    assert keeper.diverged


def test_the_keeper_leaves_a_running_rebuild_alone(jobs, events, counters):
    pipeline(jobs, events, counters, 3)
    token = counters.begin_rebuild(30)  # e.g. `observatory replay`, halfway
    keeper = Healer(Backends(RecordingBus(), jobs, events, counters))
    keeper.check()
    assert keeper.rebuilds == 0 and not counters.complete()
    counters.reset()
    for batch in events.scan(2):
        counters.apply_many(batch)
    assert counters.finish_rebuild(token)
    assert stats_differences(counters.stats(), jobs.counts()) == []


def test_a_rebuild_that_begins_during_a_comparison_is_no_divergence(jobs, events, counters, monkeypatch):
    """`observatory replay` wipes the counters just after the keeper found them complete: the keeper must
    not compare the empty cache with the store (readers would use the store until its next comparison)."""
    pipeline(jobs, events, counters, 3)
    monkeypatch.setattr(healing, "LAG_S", 0.0)
    monkeypatch.setattr(healing, "COMPARE_EVERY_S", 0.0)
    keeper = Healer(Backends(RecordingBus(), jobs, events, counters))
    keeper.check()
    assert not keeper.diverged
    real = counters.complete

    def complete_then_a_rebuild_begins() -> bool:
        was = real()
        monkeypatch.setattr(counters, "complete", real)
        counters.begin_rebuild(30)
        return was

    monkeypatch.setattr(counters, "complete", complete_then_a_rebuild_begins)
    keeper.check()
    assert counters.complete is real  # the race really happened in this round
    assert not keeper.diverged


def test_late_events_are_not_rebuilt_over_and_over(jobs, events, counters, monkeypatch):
    pipeline(jobs, events, counters, 2)
    jobs.create([new_job(key=f"late{i}") for i in range(3)])  # stored; their events have not arrived
    monkeypatch.setattr(healing, "LAG_S", 0.0)
    monkeypatch.setattr(healing, "DIVERGED_FOR_S", 0.0)
    monkeypatch.setattr(healing, "COMPARE_EVERY_S", 0.0)
    keeper = Healer(Backends(RecordingBus(), jobs, events, counters))
    for _ in range(5):
        keeper.check()
    assert keeper.diverged and keeper.rebuilds == 1  # one try; then the store answers until they agree


def test_a_retention_batch_interrupted_between_its_two_steps_is_healed_by_its_next_pass(
    jobs, events, counters, monkeypatch
):
    """Events of two jobs removed, the jobs not (the process died in between): a rebuild then misses them,
    and only retention's next pass, which moves them into the tally, lets a rebuild count them again."""
    pipeline(jobs, events, counters, 4)
    old = [j.id for j in jobs.list(None, None, 2, None).items]
    events.remove_jobs(old)
    counters.reset()
    monkeypatch.setattr(healing, "LAG_S", 0.0)
    monkeypatch.setattr(healing, "DIVERGED_FOR_S", 0.0)
    monkeypatch.setattr(healing, "COMPARE_EVERY_S", 0.0)
    keeper = Healer(Backends(RecordingBus(), jobs, events, counters))
    keeper.check()  # the mark is gone: rebuilt, from the events that are left
    keeper.check()
    keeper.check()
    assert keeper.diverged and keeper.rebuilds == 2  # the lost mark's rebuild, then one for the divergence
    keeper.check()
    assert keeper.rebuilds == 2  # the same numbers again: no rebuild over and over
    assert jobs.purge(old, datetime.now(UTC) + timedelta(seconds=1), False) == 2  # the next pass
    keeper.check()
    assert keeper.rebuilds == 3
    keeper.check()
    assert not keeper.diverged
    assert stats_differences(counters.stats(), jobs.counts()) == []


def test_replay_skips_the_events_of_jobs_the_store_no_longer_holds(jobs, events, counters):
    """Jobs purged with their events left behind (an earlier release's retention removes only the event
    documents it wrote): they are counted once, in the store's tally, not again from their events."""
    pipeline(jobs, events, counters, 6)
    old = [j.id for j in jobs.list(None, None, 2, None).items]
    assert jobs.purge(old, datetime.now(UTC) + timedelta(seconds=1), False) == 2  # the events stay
    assert len(events.for_job(old[0])) == 3
    counters.reset()

    seen, done = replay(events, counters, jobs, page=5)

    assert done and seen == 18  # every stored event read
    assert stats_differences(counters.stats(), jobs.counts()) == []
    assert counters.stats().completed == 6
