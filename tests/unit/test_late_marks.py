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


def test_every_mark_goes_once_and_none_sooner_than_its_delay():
    marks = Marks()
    late = LateMarks(marks, delay_s=0.2)
    added: dict[uuid.UUID, float] = {}
    for _ in range(5):
        ids = [uuid.uuid4(), uuid.uuid4()]
        added |= dict.fromkeys(ids, time.monotonic())
        late.add(ids)
        time.sleep(0.07)  # spread over more than one flush

    wait_for(lambda: sum(len(ids) for _, ids in marks.calls) >= len(added), "every mark")

    late.stop()
    marked = [job_id for _, ids in marks.calls for job_id in ids]
    assert sorted(marked) == sorted(added)  # each once
    assert all(at - added[job_id] >= 0.2 for at, ids in marks.calls for job_id in ids)
    assert len(marks.calls) < 5  # several adds to a call


def test_stop_marks_what_is_left_at_once_in_one_call():
    marks = Marks()
    late = LateMarks(marks, delay_s=60)
    first, second = [uuid.uuid4()], [uuid.uuid4(), uuid.uuid4()]
    late.add(first)
    late.add([])  # nothing to mark: no call for it
    late.add(second)

    late.stop()

    assert [got for _, got in marks.calls] == [first + second]


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
