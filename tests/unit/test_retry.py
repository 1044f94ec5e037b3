"""backoff_s: exponential growth, the cap, and bounded jitter."""

from __future__ import annotations

import random

import pytest

from observatory import retry
from observatory.retry import JITTER, backoff_s


@pytest.fixture
def jitter(monkeypatch):
    """Make random.uniform return one end of its range (or its middle) and record the range asked for."""
    asked: list[tuple[float, float]] = []
    pick = {"end": "mid"}

    def uniform(lo: float, hi: float) -> float:
        asked.append((lo, hi))
        return {"low": lo, "high": hi, "mid": 1.0}[pick["end"]]

    monkeypatch.setattr(retry.random, "uniform", uniform)
    return pick, asked


def test_delay_doubles_with_each_attempt(jitter):
    assert [backoff_s(n, 0.5, 1000) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_delay_is_capped_at_max(jitter):
    assert [backoff_s(n, 1, 5) for n in (3, 4, 10)] == [4, 5, 5]


def test_jitter_is_drawn_from_one_minus_to_one_plus_jitter(jitter):
    _, asked = jitter

    backoff_s(1, 1, 10)

    assert asked == [(1 - JITTER, 1 + JITTER)]
    assert JITTER == 0.2


def test_jitter_at_its_extremes_scales_the_delay(jitter):
    pick, _ = jitter

    pick["end"] = "low"
    low = backoff_s(3, 2, 100)
    pick["end"] = "high"
    high = backoff_s(3, 2, 100)

    assert (low, high) == pytest.approx((8 * 0.8, 8 * 1.2))


def test_jitter_also_applies_at_the_cap(jitter):
    pick, _ = jitter
    pick["end"] = "high"

    assert backoff_s(10, 1, 5) == pytest.approx(6.0)


def test_delays_grow_strictly_until_the_cap_even_at_opposite_jitter_extremes(jitter):
    pick, _ = jitter
    base, cap = 1.0, 64.0

    for n in range(1, 7):  # attempt 7 is the first one at the cap
        pick["end"] = "high"
        this = backoff_s(n, base, cap)
        pick["end"] = "low"
        after = backoff_s(n + 1, base, cap)
        assert after > this, n


def test_jittered_delays_stay_within_bounds():
    random.seed(1234)

    delays = [backoff_s(3, 1.0, 60.0) for _ in range(200)]

    assert all(4 * 0.8 <= d <= 4 * 1.2 for d in delays)
    assert len(set(delays)) > 100  # really random, not a constant factor
