"""Rebuild the counters from the event store, which is the read model's source of truth.

Safe at any time, also while the pipeline runs: the counters start again from nothing (one atomic reset)
and count each job under its highest-version event, so an event that the aggregators apply during the
replay, or that the replay applies too, counts once. A rebuild takes a
generation token first and marks the counters complete only if nothing wiped them (and no other rebuild
began) meanwhile; until then readers answer from the job store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from observatory.ports import Counters, EventStore

log = logging.getLogger("observatory.replay")

PAGE = 1000


def replay(
    events: EventStore, counters: Counters, progress: Callable[[int], None] | None = None, page: int = PAGE
) -> tuple[int, bool]:
    """Apply every stored event to the counters. Returns (events read, whether the counters are now
    marked complete: False when they were wiped or another rebuild began meanwhile; run it again)."""
    token = counters.begin_rebuild()
    counters.reset()  # from nothing: a finished job whose state has expired is counted once, not twice
    after: str | None = None
    seen = 0
    while True:
        batch, after = events.scan(after, page)
        if batch:
            counters.apply_many(batch)
            seen += len(batch)
            if progress is not None:
                progress(seen)
        if after is None:
            break
    return seen, counters.finish_rebuild(token)
