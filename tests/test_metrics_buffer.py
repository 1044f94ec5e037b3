"""The metrics point buffer (pure logic): what reaches Ray's metric objects at a flush."""

from __future__ import annotations

from typing import Any

from observatory.metrics import MAX_OBSERVATIONS, PointBuffer


class Recorder:
    """Stands in for a ray.util.metrics object: keeps every call it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict[str, str] | None]] = []

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.calls.append(("inc", value, tags))

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self.calls.append(("set", value, tags))

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self.calls.append(("observe", value, tags))


def _buffer() -> PointBuffer:
    return PointBuffer(interval_s=None)  # no thread: the test flushes


def test_counter_increments_are_summed_per_label_set() -> None:
    b, c = _buffer(), Recorder()
    any_c: Any = c
    for _ in range(3):
        b.inc(any_c, 1, {"type": "noop"})
    b.inc(any_c, 2, {"type": "hash"})
    assert c.calls == []  # nothing recorded before the flush
    b.flush()
    assert sorted(c.calls, key=str) == sorted([("inc", 3, {"type": "noop"}), ("inc", 2, {"type": "hash"})], key=str)


def test_a_gauge_keeps_its_last_value_and_histograms_every_observation() -> None:
    b, g, h = _buffer(), Recorder(), Recorder()
    any_g: Any = g
    any_h: Any = h
    b.set(any_g, 5)
    b.set(any_g, 7)
    for v in (0.1, 0.2, 0.1):
        b.observe(any_h, v, {"route": "/jobs"})
    b.flush()
    assert g.calls == [("set", 7, {})]
    assert h.calls == [("observe", v, {"route": "/jobs"}) for v in (0.1, 0.2, 0.1)]


def test_a_flush_records_each_point_once() -> None:
    b, c = _buffer(), Recorder()
    any_c: Any = c
    b.inc(any_c, 1)
    b.flush()
    b.flush()
    b.inc(any_c, 4)
    b.flush()
    assert c.calls == [("inc", 1, {}), ("inc", 4, {})]


def test_observations_beyond_the_cap_are_dropped_not_kept_without_bound() -> None:
    b, h = _buffer(), Recorder()
    any_h: Any = h
    for _ in range(MAX_OBSERVATIONS + 10):
        b.observe(any_h, 1.0)
    b.flush()
    assert len(h.calls) == MAX_OBSERVATIONS


def test_a_point_that_fails_to_record_loses_no_other() -> None:
    class Refuses(Recorder):
        def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
            raise ValueError("refused")

    b, bad, good = _buffer(), Refuses(), Recorder()
    any_bad: Any = bad
    any_good: Any = good
    b.inc(any_bad, 1)
    b.inc(any_good, 2)
    b.observe(any_good, 0.5)
    b.flush()
    assert good.calls == [("inc", 2, {}), ("observe", 0.5, {})]
