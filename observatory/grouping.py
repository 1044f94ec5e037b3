"""Group commit: concurrent callers' requests share one call of a batch function (one transaction, one
publish), so throughput rises with concurrency instead of each request paying its own round trips.

A free worker takes whatever is queued at that moment, except that a forming group keeps gathering requests,
up to `linger_s` after it began and until it is full, while either
- another group is being committed (until that commit ends), or
- the callers are concurrent (the group before held more than one request) and requests keep coming less than
  `gap_s` apart: the requests that a commit's answers send back arrive in a burst, and the burst goes whole.
A request goes at once when no other group is committing and the group before held one request; after a
group of several it waits `gap_s` at most for company (once: a group of one ends the rule). Under load each
commit then carries more requests, and the costs every group pays (a transaction, a publish, a work message
that the processors and aggregators each handle, their commits and broker transactions) are paid fewer times
per request. 16 single-submit clients on two cores formed groups of ~1.6 requests with neither rule, ~4-8
with the first, ~14 with both (README's Benchmark section has the measurements).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from observatory.errors import ShuttingDown

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

IDLE_POLL_S = 0.5  # how often an idle worker looks at its stop flag


class GroupCommit(Generic[T, R]):
    """`alone_on`: the exception types that one request alone can cause (bad data; the batch function
    rolls back whole): a group that fails with one is tried again request by request, so the others still
    go through. Any other failure fails the whole group.

    `linger_s`: how long a forming group may wait for more requests (0: never waits); `gap_s`: how close
    together requests must come for a group of concurrent callers to go on gathering (0: only while another
    group commits). See the module's docstring.

    `admit`: asked once per group, on the worker thread, before the batch function: for each request None
    (go on) or the exception that refuses it (a rate limit); a refused request is answered with it and left
    out, and a request tried again alone is not asked twice. An exception from `admit` fails the group."""

    def __init__(
        self,
        run_many: Callable[[Sequence[T]], Sequence[R]],
        max_size: int,
        threads: int,
        name: str,
        alone_on: tuple[type[Exception], ...] = (),
        admit: Callable[[Sequence[T]], Sequence[Exception | None]] | None = None,
        linger_s: float = 0.0,
        gap_s: float = 0.0,
    ) -> None:
        self._run_many, self._max, self._alone_on, self._admit = run_many, max_size, alone_on, admit
        self._linger_s, self._gap_s = linger_s, gap_s
        self._last_arrival = 0.0  # monotonic time of the latest request
        self._together = False  # the latest group held more than one request: callers are concurrent
        self._pending: deque[tuple[T, Future[R]]] = deque()
        self._changed = threading.Condition()  # a request came, or a commit ended
        self._committing = 0  # groups taken and not yet answered
        self._idle = 0  # workers waiting for a first request
        self._lingering = 0  # workers gathering a group (while another commits, or while requests keep coming)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, item: T) -> Future[R]:
        done: Future[R] = Future()
        with self._changed:
            if self._stop.is_set():  # no worker would ever take it
                _settle(done, exception=_stopped())
                return done
            self._pending.append((item, done))
            self._last_arrival = time.monotonic()
            # A lingering worker waits for a commit to end, its group to fill or the gap after the latest request
            # (it looks at the clock again then): a request that fills nothing has only an idle worker to wake
            # (under load, none is idle, and requests wake no thread at all).
            if self._idle or len(self._pending) >= self._max:
                self._changed.notify_all()
        return done

    def _take(self) -> list[tuple[T, Future[R]]]:
        """The next group: [] after IDLE_POLL_S without a request. Counted as committing until `_finished`."""
        with self._changed:
            self._idle += 1
            try:
                if not self._changed.wait_for(lambda: self._pending or self._stop.is_set(), timeout=IDLE_POLL_S):
                    return []
            finally:
                self._idle -= 1
            deadline = time.monotonic() + self._linger_s
            self._lingering += 1
            try:
                while 0 < len(self._pending) < self._max and not self._stop.is_set():
                    if (left := self._gather_until(deadline) - time.monotonic()) <= 0:
                        break
                    self._changed.wait(left)  # a commit's end or a full group wakes it early
            finally:
                self._lingering -= 1
            if not self._pending or self._stop.is_set():  # taken meanwhile, or left for stop() to refuse
                return []
            group = [self._pending.popleft() for _ in range(min(self._max, len(self._pending)))]
            self._together = len(group) > 1
            self._committing += 1
            return group

    def _gather_until(self, deadline: float) -> float:
        """Until when the forming group may go on gathering (the lock held): a past time when it should go now."""
        if self._committing:
            return deadline
        if self._together:
            return min(deadline, self._last_arrival + self._gap_s)
        return 0.0

    def _finished(self) -> None:
        with self._changed:
            self._committing -= 1
            self._changed.notify_all()

    def _work(self) -> None:
        while not self._stop.is_set():
            group = self._take()
            if not group:
                continue
            try:
                self._run(self._admitted(group))
            except Exception as e:  # a bug in a hook must not kill the worker and leave callers waiting
                log.exception("a group of %d request(s) failed unexpectedly", len(group))
                for _, done in group:
                    if not done.done():
                        _settle(done, exception=e)
            finally:
                self._finished()

    def _admitted(self, group: list[tuple[T, Future[R]]]) -> list[tuple[T, Future[R]]]:
        if self._admit is None:
            return group
        try:
            refusals = self._admit([item for item, _ in group])
        except Exception as e:
            log.warning("admitting a group of %d request(s) failed: %r", len(group), e)
            for _, done in group:
                _settle(done, exception=e)
            return []
        for (_, done), refusal in zip(group, refusals, strict=True):
            if refusal is not None:
                _settle(done, exception=refusal)
        return [one for one, refusal in zip(group, refusals, strict=True) if refusal is None]

    def _run(self, group: list[tuple[T, Future[R]]]) -> None:
        if not group:
            return
        try:
            results = self._run_many([item for item, _ in group])
        except Exception as e:
            if len(group) > 1 and isinstance(e, self._alone_on):
                for one in group:
                    self._run([one])
                return
            if not isinstance(e, self._alone_on):
                log.warning("a group of %d request(s) failed: %r", len(group), e)
            for _, done in group:
                _settle(done, exception=e)
            return
        for (_, done), result in zip(group, results, strict=True):
            _settle(done, result=result)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers once the groups they hold are answered (waiting up to `timeout` in all). Requests
        that no worker took are answered with ShuttingDown (none of them was run), as is any submitted from now
        on: no caller waits forever."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()  # an idle worker stops waiting, a lingering one stops gathering
        deadline = time.monotonic() + timeout  # for all of them together
        for t in self._threads:
            if t is not threading.current_thread():  # a worker that dropped the owner's last reference
                t.join(max(0.0, deadline - time.monotonic()))
        with self._changed:  # a worker still busy after `timeout` takes no new group: it checks the stop flag
            left = list(self._pending)
            self._pending.clear()
        for _, done in left:
            _settle(done, exception=_stopped())


def _stopped() -> ShuttingDown:
    return ShuttingDown("it is shutting down; send the request again (it goes to another replica)")


def _settle(done: Future[R], result: R | None = None, exception: Exception | None = None) -> None:
    """Answer a caller; one that gave up meanwhile (its future cancelled) is skipped."""
    if done.set_running_or_notify_cancel():
        if exception is not None:
            done.set_exception(exception)
        else:
            done.set_result(result)  # type: ignore[arg-type]
