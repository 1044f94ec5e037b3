"""Published marks, late and together.

A mark (`JobStore.mark_published`) only spares the sweeper a second publish of a job's work message, and the
sweeper looks only at jobs still PENDING (or CANCELLED). So the gateway marks its jobs only `delay_s` after
their publish, all that came due in one statement each `delay_s`, and the statement writes only rows the
sweeper would look at: by then a processor has usually claimed the jobs, and it writes nothing. Only jobs still
waiting in a backlog are written. A job claimed before its mark stays unmarked; cancelled later while it runs
or waits for a retry, it is the sweeper's, which publishes its `job.cancelled` once more (the same event id:
the stats count it once). A mark that fails or never comes (a replica stopped hard) costs a duplicate
delivery, never a job: the sweeper publishes the same event ids again after OBSERVATORY_SWEEP_AFTER_S, and the
processors skip what they ran.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from uuid import UUID

log = logging.getLogger(__name__)

MAX_IDS = 5000  # ids per statement


class LateMarks:
    """`mark(ids)` is called on this class's own thread for the ids added at least `delay_s` before, every
    `delay_s`; `stop` marks whatever is left at once."""

    def __init__(self, mark: Callable[[list[UUID]], None], delay_s: float, name: str = "late-marks") -> None:
        self._mark, self._delay_s = mark, delay_s
        self._due: deque[tuple[float, Sequence[UUID]]] = deque()  # in the order added, so sorted by due time
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def add(self, job_ids: Sequence[UUID]) -> None:
        if job_ids:
            with self._lock:
                self._due.append((time.monotonic() + self._delay_s, job_ids))

    def _take(self, now: float) -> list[UUID]:
        ids: list[UUID] = []
        with self._lock:
            while self._due and self._due[0][0] <= now and len(ids) < MAX_IDS:
                ids.extend(self._due.popleft()[1])
        return ids

    def _flush(self, now: float) -> None:
        while ids := self._take(now):
            try:
                self._mark(ids)
            except Exception as e:  # the sweeper covers them: see the module's docstring
                log.warning("marking %d published job(s) failed, the sweeper publishes them again: %r", len(ids), e)

    def _work(self) -> None:
        while not self._stop.wait(self._delay_s):
            self._flush(time.monotonic())
        self._flush(math.inf)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
