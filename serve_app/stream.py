"""The live stream behind `GET /read/stream`: one computation per interval, fanned out to every open page.

`Hub` runs a single loop per replica while anyone listens: it computes a snapshot (in a thread), and hands
the same encoded server-sent event to every subscriber. A slow page only ever holds the newest snapshot (its
queue keeps one), so it can't make the others wait or the replica's memory grow. `RateSeries` turns the
running totals into the overview's throughput and failure-rate points.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from contracts import RatePoint, Stats, StreamSnapshot

log = logging.getLogger(__name__)

INTERVAL_S = 1.0  # at most one snapshot per second
HEARTBEAT_S = 15.0  # a comment line keeps idle connections (and proxies) open
MAX_STREAM_S = 50.0  # end each stream before Serve's request timeout (60 s) cuts it; the browser reconnects
RETRY_MS = 2000  # how soon a browser reconnects by itself
POINT_EVERY_S = 10.0
WINDOW_S = 15 * 60


def finished(stats: Stats) -> tuple[int, int]:
    """(jobs that reached a final status, those of them that failed or dead-lettered)."""
    failed = stats.failed + stats.dead_lettered
    return stats.completed + stats.cancelled + failed, failed


class RateSeries:
    """Throughput and failure rate over the last 15 minutes, one point per 10 s, from successive totals.
    `add` is called by the read model's sampler every `every_s`, listeners or not; `points` is read by snapshots."""

    def __init__(self, every_s: float = POINT_EVERY_S, window_s: float = WINDOW_S) -> None:
        self._every = every_s
        self._points: deque[RatePoint] = deque(maxlen=int(window_s / every_s))
        self._last: tuple[float, int, int] | None = None
        self._lock = threading.Lock()

    def add(self, stats: Stats, now: float, at: datetime) -> list[RatePoint]:
        done, failed = finished(stats)
        with self._lock:
            if self._last is None:
                self._last = (now, done, failed)
            elif now - self._last[0] >= self._every:
                t0, done0, failed0 = self._last
                delta = max(done - done0, 0)
                rate = min(max(failed - failed0, 0) / delta, 1.0) if delta else 0.0
                point = RatePoint(at=at, finished_per_s=round(delta / (now - t0), 3), failure_rate=rate)
                self._points.append(point)
                self._last = (now, done, failed)
            return list(self._points)

    def points(self) -> list[RatePoint]:
        with self._lock:
            return list(self._points)


def event(name: str, data: str, event_id: int) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"id: {event_id}\nevent: {name}\n{lines}\n"


class Hub:
    def __init__(self, compute: Callable[[], StreamSnapshot], interval_s: float = INTERVAL_S) -> None:
        self._compute = compute
        self._interval = interval_s
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last: str | None = None
        self._id = 0
        self.computations = 0  # how many snapshots were computed (for tests and the benchmark)

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, heartbeat_s: float = HEARTBEAT_S, max_s: float = MAX_STREAM_S) -> AsyncIterator[str]:
        """One page's stream: `retry:`, then the newest snapshot whenever there is one, keep-alives between,
        and a clean end after `max_s` (an EventSource reconnects after `retry`)."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        try:
            yield f"retry: {RETRY_MS}\n\n"
            if self._last is not None:
                queue.put_nowait(self._last)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run())
            end = time.monotonic() + max_s
            while (left := end - time.monotonic()) > 0:
                try:
                    yield await asyncio.wait_for(queue.get(), min(heartbeat_s, left))
                except TimeoutError:
                    if end - time.monotonic() > 0:
                        yield ": keep-alive\n\n"
        finally:
            self._subscribers.discard(queue)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._subscribers:
            started = time.monotonic()
            self._id += 1
            try:
                snapshot = await run_in_threadpool(self._compute)
                self.computations += 1
                message = event("snapshot", snapshot.model_dump_json(), self._id)
            except Exception as e:  # a backend down: say so on every page, and keep trying
                log.warning("stream snapshot failed: %s", e)
                message = event("unavailable", str(e) or type(e).__name__, self._id)
            self._last = message
            for queue in list(self._subscribers):
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # only the newest snapshot matters
                queue.put_nowait(message)
            await asyncio.sleep(max(self._interval - (time.monotonic() - started), 0.05))
        self._last = None  # nobody listened: the next page starts from a fresh snapshot


def now() -> datetime:
    return datetime.now(UTC)
