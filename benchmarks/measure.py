"""What one benchmark phase measures, and the few statistics every phase shares."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

STALL_S = 120.0  # a drain whose finished count does not move for this long has failed


class BenchError(RuntimeError):
    """A phase could not be measured (a system did not come up, or stopped finishing jobs)."""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass
class Throughput:
    jobs: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


@dataclass
class SubmitRate:
    """Single submits by concurrent keep-alive clients: accepted requests per second and their latency."""

    accepted: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds


@dataclass
class Latency:
    """Submit → completed at a fixed offered load: from the scheduled send time to the server's finish time."""

    offered_rate: float
    jobs: int
    not_completed: int
    p50_ms: float
    p99_ms: float


@dataclass
class Memory:
    idle_mib: float = 0.0
    idle_processes: int = 0
    peak_mib: float = 0.0
    peak_processes: int = 0


@dataclass
class SystemResult:
    """One column of the table: a system in one configuration."""

    name: str
    throughput: Throughput | None = None
    submit: SubmitRate | None = None
    latency: Latency | None = None
    memory: Memory | None = None
    scaling: dict[int, Throughput] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def latency_stats(samples_s: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    if not samples_s:
        return float("nan"), float("nan")
    return percentile(samples_s, 0.50) * 1000, percentile(samples_s, 0.99) * 1000


class StallWatch:
    """Raises BenchError when a progress counter has not moved for STALL_S seconds."""

    def __init__(self, what: str, stall_s: float = STALL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._what = what
        self._stall_s = stall_s
        self._clock = clock
        self._last = -1
        self._since = clock()

    def update(self, done: int, target: int) -> None:
        now = self._clock()
        if done != self._last:
            self._last, self._since = done, now
        elif now - self._since > self._stall_s:
            raise BenchError(f"{self._what}: stuck at {done}/{target} finished for {self._stall_s:.0f}s")
