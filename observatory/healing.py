"""The read model's cache keeper: rebuild the counters when they are lost, and notice when they diverge.

Two signals, checked by one background thread per read-model replica:
- the counters' `complete` mark is gone (Redis flushed, restarted empty, the keys deleted, a fresh start):
  replay the event store (observatory.replay); readers use the job store until the mark is back;
- the cache's total disagrees with the job store's for longer than events take to arrive (the cache can
  never count more jobs than the store holds now, nor fewer than it held LAG_S ago): `diverged` is set,
  readers use the job store, StatsCacheDiverged fires, and after DIVERGED_FOR_S the counters are rebuilt
  once (a replay starts from the job store's tally of the jobs retention removed); if they still disagree
  (events late, not lost), the store answers until they agree again — or until retention's tally moves,
  which may be the very jobs a rebuild missed (a retention batch that removed their events and was
  interrupted before removing the jobs): then one more rebuild.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from observatory.backends import Backends
from observatory.errors import BackendUnavailable
from observatory.replay import RebuildRunning, replay

log = logging.getLogger("observatory.healing")

CHECK_EVERY_S = 2.0  # how often the complete mark is read
COMPARE_EVERY_S = 10.0  # how often the totals are compared (a count over the job store)
LAG_S = 30.0  # events of jobs created longer ago than this are counted, unless the cache lost them
DIVERGED_FOR_S = 30.0  # disagreeing this long: reset and replay


class Healer:
    def __init__(self, backends: Backends, check_every_s: float = CHECK_EVERY_S) -> None:
        self._b = backends
        self._every = check_every_s
        self._totals: deque[tuple[float, int]] = deque()  # (when, store total) over the last LAG_S and more
        self._diverged_since: float | None = None
        self._compared = -COMPARE_EVERY_S
        self._rebuilt = False  # a rebuild was tried in the current divergence
        self._rebuilt_tally: object = None  # retention's tally when it was
        self.rebuilds = 0
        self._stop = threading.Event()

    @property
    def diverged(self) -> bool:
        return self._diverged_since is not None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="cache-healer", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except BackendUnavailable as e:  # a backend down: try again on the next round
                log.warning("cache check skipped: %s", e)
            except Exception:  # never let the thread die: the next round may succeed
                log.exception("cache check failed")
            self._stop.wait(self._every)

    def check(self) -> None:
        """One round: rebuild when the mark is gone; compare the totals; rebuild once per divergence."""
        counters = self._b.counters
        if not counters.complete():
            self._diverged_since, self._rebuilt = None, False
            self._totals.clear()
            self._rebuild("the counters are incomplete (lost, flushed or new)")
            return
        if time.monotonic() - self._compared < COMPARE_EVERY_S:
            return
        cached = counters.stats()  # first the cache, then the store: a right cache never counts more
        if cached is None and not counters.complete():
            return  # a rebuild began after the mark was read (`observatory replay`): no comparison now
        counts, _ = self._b.jobs.counts()
        now, store_total = time.monotonic(), sum(counts.values())
        self._compared = now
        cache_total = cached.total_jobs if cached else 0  # complete and empty: a new install, or counts lost
        self._totals.append((now, store_total))
        while len(self._totals) > 1 and self._totals[1][0] <= now - LAG_S:
            self._totals.popleft()
        settled = self._totals[0][1] if self._totals[0][0] <= now - LAG_S else 0
        if settled <= cache_total <= store_total:
            if self._diverged_since is not None:
                log.warning("the stats cache agrees with the job store again")
            self._diverged_since, self._rebuilt = None, False
            return
        if self._diverged_since is None:
            self._diverged_since = now
            log.warning(
                "the stats cache counts %d jobs, the job store %d (at least %d %gs ago): answering from the store",
                cache_total,
                store_total,
                settled,
                LAG_S,
            )
        elif now - self._diverged_since >= DIVERGED_FOR_S:
            # Once per divergence: when events are only late (the broker or the aggregators behind), a
            # rebuild cannot catch up, and the store answers until they do. Again if retention's tally moved.
            tally = self._b.jobs.purged_counts()
            if not self._rebuilt or tally != self._rebuilt_tally:
                self._rebuilt, self._rebuilt_tally = True, tally
                self._rebuild(f"the stats cache disagreed with the job store for {DIVERGED_FOR_S:g}s")

    def _rebuild(self, why: str) -> None:
        began = time.monotonic()
        try:
            events, done = replay(self._b.events, self._b.counters, self._b.jobs)
        except RebuildRunning:
            return  # someone else (another replica, `observatory replay`) is at it
        log.warning("rebuilding the stats cache from the event store: %s", why)
        self.rebuilds += 1
        log.warning(
            "stats cache rebuilt from %d events in %.1fs%s",
            events,
            time.monotonic() - began,
            "" if done else " (wiped or rebuilt again meanwhile: another round follows)",
        )
