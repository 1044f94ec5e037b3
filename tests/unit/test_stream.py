"""The live stream's fan-out and its rate series (serve_app/stream.py), without servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from contracts import Stats, StreamSnapshot
from serve_app.stream import Hub, RateSeries, event

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def stats(completed: int = 0, failed: int = 0, dead: int = 0) -> Stats:
    return Stats(total_jobs=completed + failed + dead, completed=completed, failed=failed, dead_lettered=dead)


def snapshot(n: int) -> StreamSnapshot:
    return StreamSnapshot(at=AT, stats=stats(completed=n), alerts=[], recent=[], queues=[], series=[])


def test_rate_series_one_point_per_interval_with_throughput_and_failure_share():
    series = RateSeries(every_s=10, window_s=30)
    assert series.add(stats(), 0.0, AT) == []
    assert series.add(stats(completed=5), 5.0, AT) == []  # not 10 s yet
    [p] = series.add(stats(completed=15, failed=3, dead=2), 10.0, AT)
    assert p.finished_per_s == 2.0 and p.failure_rate == 0.25
    [_, q] = series.add(stats(completed=15, failed=3, dead=2), 20.0, AT)
    assert q.finished_per_s == 0.0 and q.failure_rate == 0.0
    for t in (30.0, 40.0, 50.0):
        points = series.add(stats(completed=15, failed=3, dead=2), t, AT)
    assert len(points) == 3  # the window keeps 30 s


def test_event_format_is_server_sent_events():
    assert event("snapshot", '{"a":\n1}', 7) == 'id: 7\nevent: snapshot\ndata: {"a":\ndata: 1}\n\n'


@pytest.mark.asyncio
async def test_one_computation_fans_out_to_every_subscriber():
    computed = 0

    def compute() -> StreamSnapshot:
        nonlocal computed
        computed += 1
        return snapshot(computed)

    hub = Hub(compute, interval_s=0.05)
    streams = [hub.subscribe(heartbeat_s=5) for _ in range(50)]
    firsts = await asyncio.gather(*(anext(s) for s in streams))
    assert set(firsts) == {"retry: 2000\n\n"}
    got = await asyncio.gather(*(anext(s) for s in streams))
    assert len(set(got)) == 1 and "event: snapshot" in got[0]  # the very same message for all 50
    assert hub.computations <= 2 and hub.listeners == 50
    await asyncio.sleep(0.3)
    assert hub.computations < 15  # one per interval, not one per subscriber
    for s in streams:
        await s.aclose()
    assert hub.listeners == 0
    await asyncio.sleep(0.15)
    before = hub.computations
    await asyncio.sleep(0.2)
    assert hub.computations == before  # nobody listens: nothing is computed


@pytest.mark.asyncio
async def test_a_failing_backend_is_an_unavailable_event_and_the_stream_goes_on():
    calls = 0

    def compute() -> StreamSnapshot:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("jobs store down")
        return snapshot(calls)

    hub = Hub(compute, interval_s=0.02)
    s = hub.subscribe(heartbeat_s=5)
    await anext(s)
    first = await anext(s)
    assert "event: unavailable" in first and "jobs store down" in first
    assert "event: snapshot" in await anext(s)
    await s.aclose()


@pytest.mark.asyncio
async def test_a_slow_reader_only_ever_holds_the_newest_snapshot_and_idle_streams_get_keep_alives():
    n = 0

    def compute() -> StreamSnapshot:
        nonlocal n
        n += 1
        return snapshot(n)

    hub = Hub(compute, interval_s=0.01)
    slow = hub.subscribe(heartbeat_s=5)
    await anext(slow)
    await asyncio.sleep(0.2)  # many snapshots pass while it does not read
    newest = await anext(slow)
    assert f'"completed":{n}' in newest or f'"completed":{n - 1}' in newest
    await slow.aclose()

    quiet = Hub(lambda: (_ for _ in ()).throw(AssertionError("unused")), interval_s=60)
    s = quiet.subscribe(heartbeat_s=0.05)
    await anext(s)
    first = await anext(s)  # the one computation (an error event), then only keep-alives
    assert "event: unavailable" in first
    assert await anext(s) == ": keep-alive\n\n"
    await s.aclose()
    await quiet.close()


@pytest.mark.asyncio
async def test_a_stream_ends_cleanly_before_the_proxys_timeout_and_unsubscribes():
    hub = Hub(lambda: snapshot(1), interval_s=0.05)
    chunks = [chunk async for chunk in hub.subscribe(heartbeat_s=0.1, max_s=0.4)]
    assert chunks[0] == "retry: 2000\n\n" and any("event: snapshot" in c for c in chunks)
    assert hub.listeners == 0
    await hub.close()


@pytest.mark.asyncio
async def test_closing_a_stream_at_its_first_chunk_still_unsubscribes():
    hub = Hub(lambda: snapshot(1), interval_s=0.05)
    s = hub.subscribe()
    await anext(s)
    await s.aclose()
    assert hub.listeners == 0
    await hub.close()
