"""The benchmark's split of a latency run's slowest 1 % (pure arithmetic on the server's stamps)."""

from __future__ import annotations

import pytest

from benchmarks.measure import tail

START = 1000.0


def _job(sent: float, inserted: float, taken: float, done: float) -> tuple[float, float, float, float]:
    return (sent, sent + inserted, sent + inserted + taken, sent + inserted + taken + done)


def _fast(n: int) -> list[tuple[float, float, float, float]]:
    return [_job(START + i * 0.01, 0.002, 0.003, 0.004) for i in range(n)]


def test_the_slowest_one_percent_is_split_into_its_stages() -> None:
    # The slowest two by their whole latency (240 and 180 ms). The third (175 ms) is slower than one of them in
    # each stage and in each sum of two stages: ranking by any part of the latency would pick it.
    slow = [_job(START + 1.2, 0.030, 0.200, 0.010), _job(START + 2.1, 0.070, 0.080, 0.030)]
    runner_up = _job(START + 0.3, 0.055, 0.105, 0.015)
    got = tail(_fast(197) + [runner_up] + slow, START, 3.0)
    assert got is not None
    assert (got.jobs, got.of) == (2, 200)
    assert got.to_inserted_ms == pytest.approx(50)
    assert got.to_taken_ms == pytest.approx(140)
    assert got.to_done_ms == pytest.approx(20)
    assert (got.seconds_hit, got.seconds_run) == (2, 3)  # sent in its second and third seconds
    assert got.describe() == (
        "its slowest 2 of 200 jobs (1 %, at least one) spent on average 50 ms until inserted, 140 ms more until "
        "a processor took them and 20 ms more until completed, and were sent in 2 of the run's 3 seconds"
    )


def test_the_seconds_count_from_the_run_start_and_a_whole_second_is_one() -> None:
    # The run's first sends failed: the first completed job was sent 2.5 s in. The seconds still count from
    # the run's start (the two slowest, 3.4 and 3.8 s in, share its fourth second), and a 10 s run has 10.
    late = [_job(START + 2.5 + i * 0.01, 0.002, 0.003, 0.004) for i in range(198)]
    slow = [_job(START + 3.4, 0.1, 0.1, 0.1), _job(START + 3.8, 0.1, 0.1, 0.1)]
    got = tail(late + slow, START, 10.0)
    assert got is not None and (got.jobs, got.seconds_hit, got.seconds_run) == (2, 1, 10)


@pytest.mark.parametrize(("completed", "slowest"), [(1, 1), (99, 1), (150, 1), (250, 2), (2000, 20)])
def test_one_percent_rounds_down_but_is_never_none(completed: int, slowest: int) -> None:
    got = tail(_fast(completed), START, 30.0)
    assert got is not None and got.jobs == slowest


def test_no_completed_job_names_nothing() -> None:
    assert tail([], START, 10.0) is None
