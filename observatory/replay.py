"""Rebuild the counters from the event store, which is the read model's source of truth.

Safe at any time, also while the pipeline runs: the counters start again from nothing (begin_rebuild)
and count each job under its highest-version event, so an event that the aggregators apply during the
replay, or that the replay applies too, counts once. A rebuild takes a
generation token first and marks the counters complete only if nothing wiped them (and no other rebuild
began) meanwhile; until then readers answer from the job store.

Jobs that retention removed (observatory.retention) are counted in the job store's tally of them (the
rebuild's baseline), not from events: the rebuild starts from that tally instead of from nothing, and skips
any event of a job the store no longer holds (retention removes a job's events before the job; an event
redelivered after that, or one an earlier release's retention left, may still be stored). When retention
removes jobs during the scan, the scan may have read some of their events and not others, so the counts cannot
be trusted: the rebuild gives up (the caller runs it again; retention pauses while a rebuild holds the
lease). A whole rebuild that fits between one batch's event delete and its tally bump (milliseconds) would miss
that batch unnoticed here; the keeper's totals check (observatory.healing) catches that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from observatory.ports import Counters, EventStore, JobStore

log = logging.getLogger("observatory.replay")

PAGE = 1000
LEASE_S = 30.0  # a rebuild renews its lease with every page; one that dies frees the counters after this


class RebuildRunning(Exception):
    """Another rebuild holds the counters' lease."""


def replay(
    events: EventStore,
    counters: Counters,
    jobs: JobStore,
    progress: Callable[[int], None] | None = None,
    page: int = PAGE,
    wait_s: float = 0.0,
) -> tuple[int, bool]:
    """Apply every stored event to the counters, on top of the jobs retention removed. Returns (events
    read, whether the counters are now marked complete: False when they were wiped, another rebuild began
    or retention removed jobs meanwhile; run it again).
    While another rebuild runs, waits up to `wait_s` for it, then raises RebuildRunning."""
    deadline = time.monotonic() + wait_s
    while True:
        baseline = jobs.purged_counts()
        if (token := counters.begin_rebuild(LEASE_S, baseline)) is not None:
            break
        if time.monotonic() >= deadline:
            raise RebuildRunning("another rebuild of the counters is running")
        time.sleep(1.0)
    seen = 0
    for batch in events.scan(page):
        # Only the events of jobs the store still holds: a job retention removed is in the baseline already,
        # and events of one may still be stored (an earlier release's retention, during an upgrade or after a
        # rollback, removes only the event documents it wrote itself): counted again, the stats would exceed
        # the store, and every rebuild would repeat it.
        held = jobs.get_many(list({e.payload.job_id for e in batch}))
        counters.apply_many([e for e in batch if e.payload.job_id in held])
        counters.renew_rebuild(token, LEASE_S)
        seen += len(batch)
        if progress is not None:
            progress(seen)
    if jobs.purged_counts() != baseline:
        log.warning("retention removed jobs during the rebuild: its counts are off, it must run again")
        counters.abandon_rebuild(token)
        return seen, False
    return seen, counters.finish_rebuild(token)
