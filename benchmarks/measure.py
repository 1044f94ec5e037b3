"""What one benchmark phase measures, and the few statistics every phase shares."""

from __future__ import annotations

import math
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
class Tail:
    """Where the slowest 1 % of a latency run's jobs spent their time (means, ms), and when they were sent."""

    jobs: int
    of: int  # completed jobs in the run
    to_inserted_ms: float  # scheduled send → the job's row inserted (client, proxy, gateway, group commit)
    to_taken_ms: float  # inserted → a processor claimed it (the insert's commit, publish, broker, processor)
    to_done_ms: float  # claimed → completed (handler, commit)
    seconds_hit: int  # how many distinct seconds of the run they were sent in
    seconds_run: int

    def describe(self) -> str:
        return (
            f"its slowest {self.jobs} of {self.of} jobs (1 %, at least one) spent on average "
            f"{self.to_inserted_ms:.0f} ms until inserted, {self.to_taken_ms:.0f} ms more until a processor took "
            f"them and {self.to_done_ms:.0f} ms more until completed, and were sent in {self.seconds_hit} of the "
            f"run's {self.seconds_run} seconds"
        )


@dataclass
class Latency:
    """Submit → completed at a fixed offered load: from the scheduled send time to the server's finish time."""

    offered_rate: float
    jobs: int
    not_completed: int
    p50_ms: float
    p99_ms: float
    tail: Tail | None = None


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


def tail(stamps: Sequence[tuple[float, float, float, float]], start: float, seconds: float) -> Tail | None:
    """The slowest 1 % (at least one job) of (scheduled send, inserted, taken, completed) epoch times, of a run
    that began sending at `start` and sent for `seconds`."""
    if not stamps:
        return None
    ordered = sorted(stamps, key=lambda s: s[3] - s[0])
    slow = ordered[-max(1, len(ordered) // 100) :]

    def mean_ms(i: int) -> float:
        return sum(s[i + 1] - s[i] for s in slow) / len(slow) * 1000

    return Tail(
        jobs=len(slow),
        of=len(stamps),
        to_inserted_ms=mean_ms(0),
        to_taken_ms=mean_ms(1),
        to_done_ms=mean_ms(2),
        seconds_hit=len({int(s[0] - start) for s in slow}),
        seconds_run=math.ceil(seconds),
    )


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
