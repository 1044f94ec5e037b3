"""Late marks: the gateway's published marks go in one call, no sooner than their delay."""

from __future__ import annotations

import threading
import time
import uuid

from observatory.late_marks import LateMarks
from tests.helpers import wait_for


class Marks:
    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[tuple[float, list[uuid.UUID]]] = []
        self._fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self, ids: list[uuid.UUID]) -> None:
        with self._lock:
            if self._fail_first:
                self._fail_first = False
                raise RuntimeError("store down")
            self.calls.append((time.monotonic(), list(ids)))


def test_marks_added_together_go_in_one_call_no_sooner_than_the_delay():
    marks = Marks()
    late = LateMarks(marks, delay_s=0.3)
    first, second = [uuid.uuid4(), uuid.uuid4()], [uuid.uuid4()]
    added = time.monotonic()
    late.add(first)
    late.add(second)

    wait_for(lambda: marks.calls, "the marks")

    [(at, ids)] = marks.calls
    assert ids == first + second
    assert at - added >= 0.3
    late.stop()


def test_stop_marks_what_is_left_at_once():
    marks = Marks()
    late = LateMarks(marks, delay_s=60)
    ids = [uuid.uuid4()]
    late.add(ids)
    late.add([])  # nothing to mark: no call for it

    late.stop()

    assert [got for _, got in marks.calls] == [ids]


def test_a_failed_mark_does_not_stop_the_later_ones():
    marks = Marks(fail_first=True)
    late = LateMarks(marks, delay_s=0.05)
    lost, kept = [uuid.uuid4()], [uuid.uuid4()]
    late.add(lost)
    wait_for(lambda: not marks._fail_first, "the failing mark")
    late.add(kept)

    wait_for(lambda: marks.calls, "the next mark")

    assert [got for _, got in marks.calls] == [kept]
    late.stop()
