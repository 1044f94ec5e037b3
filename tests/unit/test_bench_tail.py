"""The benchmark's split of a latency run's slowest 1 % (pure arithmetic on the server's stamps)."""

from __future__ import annotations

import pytest

from benchmarks.measure import tail


def _job(sent: float, stored: float, taken: float, done: float) -> tuple[float, float, float, float]:
    return (sent, sent + stored, sent + stored + taken, sent + stored + taken + done)


def test_the_slowest_one_percent_is_split_into_its_stages() -> None:
    fast = [_job(1000 + i * 0.01, 0.002, 0.003, 0.004) for i in range(198)]
    slow = [_job(1000.5, 0.030, 0.200, 0.010), _job(1000.8, 0.050, 0.100, 0.030)]
    got = tail(fast + slow)
    assert got is not None
    assert got.jobs == 2  # 1 % of 200
    assert got.to_stored_ms == pytest.approx(40)
    assert got.to_taken_ms == pytest.approx(150)
    assert got.to_done_ms == pytest.approx(20)
    assert (got.seconds_hit, got.seconds_run) == (1, 2)  # both sent in the first of two seconds
    assert "2 jobs" in got.describe() and "150 ms more until a processor" in got.describe()


def test_few_jobs_still_name_the_slowest_one_and_none_names_nothing() -> None:
    got = tail([_job(5.0, 0.001, 0.001, 0.001), _job(5.5, 0.1, 0.0, 0.0)])
    assert got is not None and got.jobs == 1 and got.to_stored_ms == pytest.approx(100)
    assert tail([]) is None
