"""Micro-batching of deliveries: what a consumer thread hands over is handled in batches on worker threads.

By default there is no waiting for a batch to fill: a worker takes whatever has arrived (up to `max_size`) as
soon as it is free, so a quiet system handles each message at once, and a busy one handles many per commit.
A `fill_s` window trades that promptness for fewer, larger batches where nobody waits on them (the
aggregators): after the first message, a worker goes on taking messages for up to `fill_s`, or until the
batch is full.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from observatory.errors import BackendUnavailable
from observatory.ports import Delivery

log = logging.getLogger(__name__)

BACKOFF_BEFORE_REQUEUE_S = 1.0  # a backend outage should not turn requeues into a hot loop
IDLE_POLL_S = 0.5  # how often an idle worker looks at its stop flag


class Once:
    """A delivery settled at most once: after a failure mid-batch, only the unsettled are requeued."""

    def __init__(self, inner: Delivery) -> None:
        self._inner = inner
        self.body, self.redelivered = inner.body, inner.redelivered
        self.settled = False

    def ack(self) -> None:
        if not self.settled:
            self.settled = True
            self._inner.ack()

    def reject(self, requeue: bool) -> None:
        if not self.settled:
            self.settled = True
            self._inner.reject(requeue)


class _Whole:
    """A message that carries several jobs' work, settled once all its parts are: acked, or requeued whole when
    any part asked to be (the parts that were done are skipped when it comes back, as duplicates are)."""

    def __init__(self, inner: Delivery, parts: int) -> None:
        self._inner, self._left, self._requeue = inner, parts, False
        self._lock = threading.Lock()

    def settle(self, requeue: bool) -> None:
        with self._lock:
            self._left -= 1
            self._requeue = self._requeue or requeue
            if self._left:
                return
        if self._requeue:
            self._inner.reject(requeue=True)
        else:
            self._inner.ack()  # a part rejected for good was dead-lettered with its body by the handler


class _Part:
    """One job's work out of a message of several (topology.messages)."""

    def __init__(self, whole: _Whole, body: bytes, redelivered: bool) -> None:
        self._whole, self.body, self.redelivered = whole, body, redelivered

    def ack(self) -> None:
        self._whole.settle(requeue=False)

    def reject(self, requeue: bool) -> None:
        self._whole.settle(requeue)


def split(delivery: Delivery) -> list[Delivery]:
    """The parts of a message of several events (a JSON array), each one event's body; a message that is not a
    non-empty array is one part, itself (the handler dead-letters what it cannot read). Never raises: it runs on
    the consumer's thread, which a poison message must not stop."""
    try:
        items = json.loads(delivery.body)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return [delivery]
    if not isinstance(items, list) or not items:
        return [delivery]
    whole = _Whole(delivery, len(items))
    return [_Part(whole, json.dumps(item).encode(), delivery.redelivered) for item in items]


class MicroBatcher:
    """Deliveries handed over by a consumer thread, handled in batches of up to `max_size` on `threads` workers.

    A message of several jobs comes in with one `put_many`: one lock and one wake-up for the lot, where a put
    per part woke a worker per part (most of them to find the batch already taken)."""

    def __init__(
        self,
        handle: Callable[[Sequence[Delivery]], object],
        max_size: int,
        threads: int,
        name: str,
        on_done: Callable[[int], None] | None = None,
        fill_s: float = 0.0,
    ) -> None:
        self._handle, self._max, self._fill_s = handle, max_size, fill_s
        self._on_done = on_done or (lambda _: None)
        self._items: deque[Once] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-batch-{i}", daemon=True) for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def put(self, delivery: Delivery) -> None:
        self.put_many([delivery])

    def put_many(self, deliveries: Sequence[Delivery]) -> None:
        """Queue `deliveries` and wake as many workers as they make batches for (at most all of them)."""
        with self._ready:
            self._items.extend(Once(d) for d in deliveries)
            self._ready.notify(-(-len(deliveries) // self._max))

    def _take(self) -> list[Once]:
        with self._ready:
            self._ready.wait_for(lambda: self._items or self._stop.is_set(), IDLE_POLL_S)
            if not self._items:  # the idle poll ended, or stop came with nothing queued
                return []
            batch = self._pop(self._max)
            until = time.monotonic() + self._fill_s
            while len(batch) < self._max and (left := until - time.monotonic()) > 0:
                if not self._items:
                    self._ready.wait(left)
                batch += self._pop(self._max - len(batch))
            if self._items:  # more than this batch: pass the wake-up on (a put may have woken only this worker)
                self._ready.notify()
            return batch

    def _pop(self, n: int) -> list[Once]:
        items = self._items
        return [items.popleft() for _ in range(min(n, len(items)))]

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if batch:
                handle_or_requeue(self._handle, batch)
                self._on_done(len(batch))

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batches in hand; what is still queued is never acked, so the broker redelivers it."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        for t in self._threads:
            t.join(timeout)


def handle_or_requeue(handle: Callable[[Sequence[Delivery]], object], batch: Sequence[Once]) -> None:
    """Run one batch; on a failure, requeue whatever it had not settled yet (after a pause)."""
    try:
        handle(batch)
    except BackendUnavailable as e:
        log.warning("%s; %d message(s) requeued", e, sum(not d.settled for d in batch))
        requeue(batch)
    except Exception:
        log.exception("unexpected error; %d message(s) requeued", sum(not d.settled for d in batch))
        requeue(batch)


def requeue(batch: Sequence[Once]) -> None:
    time.sleep(BACKOFF_BEFORE_REQUEUE_S)
    for d in batch:
        d.reject(requeue=True)
