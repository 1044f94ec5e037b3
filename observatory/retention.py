"""Retention: finished jobs past a cutoff leave the job store, with their attempts and their events.

What goes: COMPLETED, FAILED and CANCELLED jobs (no event can change them any more) that finished before the
cutoff; DEAD_LETTERED ones only when asked (`observatory purge --dead-letters`), since a requeue can still
follow. Unfinished jobs never.

The stats keep counting removed jobs: the job store adds each one to its purged tally in the transaction
that deletes it, `JobStore.counts()` adds the tally to the rows, and a rebuild of the counters from the event
store starts from the tally (observatory.replay). The counters cache itself is not touched.

Each batch removes the jobs' events first, then the jobs and their tally in one transaction. A crash in
between leaves jobs without events for one batch, still stored and counted by the job store; the next pass
finds them again and finishes. The other order could leave events of jobs already in the tally, which
nothing would ever find again (a rebuild skips them: it counts only the events of jobs the store holds).
(With `--dead-letters`, a job requeued between the two steps stays, without its old events: it is counted by
its new ones.)

No MongoDB TTL index on the events: it would delete events without adding their jobs to the tally (a rebuild
would lose them), and by age alone, so also the events of dead-lettered and long-running jobs.

While a rebuild of the counters holds its lease, retention waits: a rebuild that sees jobs removed under it
must start again, and a long one would otherwise never finish.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from observatory.backends import Backends
from observatory.errors import BackendUnavailable
from observatory.ports import Expired

log = logging.getLogger("observatory.retention")

BATCH = 500  # jobs per batch: one short transaction each, and one event delete of a few thousand events

BatchHook = Callable[[int, int], None]  # (jobs, events) one batch removed (or would remove)


@dataclass
class Removed:
    jobs: int = 0
    events: int = 0
    paused: bool = False  # stopped early: a rebuild of the counters holds its lease


def purge_once(
    b: Backends,
    cutoff: datetime,
    batch: int = BATCH,
    dead_letters: bool = False,
    dry_run: bool = False,
    on_batch: BatchHook | None = None,
    stop: threading.Event | None = None,
) -> Removed:
    """Remove every job retention may remove that finished before `cutoff`, `batch` at a time, with its
    events; with `dry_run`, count them and change nothing."""
    removed = Removed()
    after: Expired | None = None
    while stop is None or not stop.is_set():
        if not dry_run and b.counters.rebuilding():
            removed.paused = True
            break
        page = b.jobs.expired(cutoff, batch, dead_letters, after)
        if not page:
            break
        after = page[-1]  # keyset: a dry run deletes nothing, and a job kept by `purge` is not taken again
        ids = [e.job_id for e in page]
        if dry_run:
            jobs, events = len(ids), b.events.count_jobs(ids)
        else:
            events = b.events.remove_jobs(ids)  # first: see the module's docstring
            jobs = b.jobs.purge(ids, cutoff, dead_letters)
        removed.jobs += jobs
        removed.events += events
        if on_batch is not None:
            on_batch(jobs, events)
        if len(page) < batch:
            break
    return removed


def keep(b: Backends, days: float, interval_s: float, stop: threading.Event, on_batch: BatchHook | None = None) -> None:
    """The workers app's retention thread: a pass every `interval_s` until `stop`, removing what finished more
    than `days` ago. A backend that is down skips the pass; the next one catches up."""
    while not stop.wait(interval_s):
        try:
            removed = purge_once(b, datetime.now(UTC) - timedelta(days=days), on_batch=on_batch, stop=stop)
        except BackendUnavailable as e:
            log.warning("retention pass skipped: %s", e)
            continue
        except Exception:  # never let the thread die: the next pass may succeed
            log.exception("retention pass failed")
            continue
        if removed.jobs:
            log.info("retention removed %d jobs and %d events", removed.jobs, removed.events)
        if removed.paused:
            log.info("retention waits for the rebuild of the stats counters to finish")
