"""The processors' autoscaling rule: KEDA's queue-length target, and a scale-down window as hysteresis."""

from __future__ import annotations

import pytest

from observatory.autoscaling import Autoscaler, ScalePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scaler(start: int = 1, **policy: float) -> tuple[Autoscaler, Clock]:
    clock = Clock()
    fields = {"min": 1, "max": 4, "target_backlog": 100, "max_wait_s": 30.0, "down_window_s": 60.0, **policy}
    return Autoscaler(ScalePolicy(**fields), start, clock), clock  # type: ignore[arg-type]


def test_one_processor_per_target_backlog_within_min_and_max():
    a, _ = scaler()

    assert [a.decide(n, None, 1).wanted for n in (0, 1, 100, 101, 350, 10_000)] == [1, 1, 1, 2, 4, 4]


def test_up_at_once_down_only_after_the_window():
    a, clock = scaler()
    assert a.decide(400, None, 1).desired == 4

    clock.now = 30
    held = a.decide(0, None, 4)
    clock.now = 61
    still = a.decide(0, None, 4)
    clock.now = 91
    down = a.decide(0, None, 4)

    assert (held.desired, held.wanted) == (4, 1) and "held at 4" in held.reason
    assert still.desired == 1  # the 400-message sample (t=0) left the 60 s window at t=61
    assert down.desired == 1


def test_the_count_at_start_up_stays_for_a_window_before_any_scale_down():
    a, clock = scaler(start=3)

    assert a.decide(0, None, 3).desired == 3
    clock.now = 61
    assert a.decide(0, None, 3).desired == 1


def test_a_backlog_that_comes_and_goes_keeps_the_count():
    a, clock = scaler()
    for t in range(0, 120, 10):
        clock.now = t
        d = a.decide(300 if t % 20 == 0 else 0, None, 3)
        assert d.desired == 3


def test_a_long_wait_asks_for_one_more_than_running():
    a, _ = scaler()

    assert a.decide(50, 45.0, 2).wanted == 3
    assert a.decide(50, 10.0, 2).wanted == 1
    assert a.decide(0, 45.0, 2).wanted == 1  # nothing ready: the wait is over
    assert a.decide(50, 45.0, 4).wanted == 4  # never past max


@pytest.mark.parametrize(("low", "high"), [(0, 2), (3, 2)])
def test_bounds_must_make_sense(low, high):
    with pytest.raises(ValueError, match="min_processors"):
        ScalePolicy(min=low, max=high)


def test_scaling_down_drains_the_newest_and_up_reuses_free_names():
    from serve_app.workers import resized

    kept = ["processor-0", "processor-1", "processor-2"]

    assert resized(kept, 1, set(kept)) == ["processor-0"]
    # processor-1 and -2 are still draining: their names are not free yet
    assert resized(["processor-0"], 3, {"processor-0", "processor-1", "processor-2"}) == [
        "processor-0",
        "processor-3",
        "processor-4",
    ]
    assert resized(["processor-0"], 2, {"processor-0"}) == ["processor-0", "processor-1"]
