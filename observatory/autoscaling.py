"""How many processors the backlog calls for: the KEDA RabbitMQ scaler's rule, with Kubernetes' scale-down
stabilisation as the hysteresis.

- Wanted now: one processor per `target_backlog` ready messages (rounded up), plus one more than running
  while the oldest waiting job has waited longer than `max_wait_s`; kept within [min, max].
- Scaling up follows at once. Scaling down follows only to the highest count wanted over the last
  `down_window_s`, so a backlog that comes and goes does not make processors come and go (and a processor
  that is drained is not wanted back a moment later).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalePolicy:
    min: int
    max: int
    target_backlog: int = 100  # ready messages per processor (KEDA's `value` for `QueueLength`)
    max_wait_s: float = 30.0  # the oldest waiting job older than this: one processor more
    down_window_s: float = 60.0  # scale down to the highest count wanted over this window

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise ValueError(f"min_processors ({self.min}) must be at least 1 and at most max_processors ({self.max})")

    @property
    def fixed(self) -> bool:
        return self.min == self.max


@dataclass(frozen=True)
class Decision:
    desired: int
    wanted: int  # what this sample alone calls for
    backlog: int
    oldest_wait_s: float | None
    reason: str


class Autoscaler:
    def __init__(self, policy: ScalePolicy, start: int, clock: Callable[[], float] = time.monotonic) -> None:
        """`start`: the processors running at first, which count as wanted now (no scale-down at start-up)."""
        self.policy = policy
        self._clock = clock
        self._wanted: deque[tuple[float, int]] = deque([(clock(), start)])

    def decide(self, backlog: int, oldest_wait_s: float | None, current: int) -> Decision:
        p = self.policy
        by_backlog = math.ceil(backlog / p.target_backlog) if backlog > 0 else 0
        waited = oldest_wait_s is not None and oldest_wait_s > p.max_wait_s and backlog > 0
        wanted = max(by_backlog, current + 1 if waited else 0)
        wanted = min(max(wanted, p.min), p.max)
        now = self._clock()
        self._wanted.append((now, wanted))
        while self._wanted and self._wanted[0][0] < now - p.down_window_s:
            self._wanted.popleft()
        desired = max(n for _, n in self._wanted)
        reason = f"{backlog} ready, one processor per {p.target_backlog}"
        if waited:
            reason += f"; the oldest waiting job waited {oldest_wait_s:.0f} s (over {p.max_wait_s:g} s)"
        if desired > wanted:
            reason += f"; held at {desired} (the most wanted over the last {p.down_window_s:g} s)"
        return Decision(desired, wanted, backlog, oldest_wait_s, reason)
