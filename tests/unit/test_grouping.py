"""Group commit: concurrent requests share one call; a request with bad data fails alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import pytest

from observatory.errors import InvalidSubmission, RateLimited, ShuttingDown, StoreUnavailable
from observatory.grouping import GroupCommit
from tests.helpers import wait_for


class Recorder:
    def __init__(self, gate: threading.Event | None = None, bad: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self._gate, self._bad = gate, bad

    def __call__(self, items: Sequence[str]) -> list[str]:
        if self._gate is not None:
            assert self._gate.wait(30), "the test never opened the gate"
        self.calls.append(list(items))
        if self._bad in items:
            raise InvalidSubmission(f"{self._bad} is bad", [(["body"], "bad")])
        return [i.upper() for i in items]


def test_a_lone_request_is_run_at_once_and_answered():
    run = Recorder()
    group = GroupCommit(run, max_size=10, threads=1, name="t")

    assert group.submit("a").result(5) == "A"
    assert run.calls == [["a"]]
    group.stop()


def test_requests_queued_while_the_worker_is_busy_share_one_call():
    gate = threading.Event()
    run = Recorder(gate)
    group = GroupCommit(run, max_size=10, threads=1, name="t")
    first = group.submit("a")  # holds the only worker until the gate opens
    wait_for(lambda: not group._pending, "the worker to take the first request", 5)  # noqa: SLF001
    rest = [group.submit(x) for x in "bcd"]

    gate.set()

    assert [f.result(5) for f in [first, *rest]] == ["A", "B", "C", "D"]
    assert run.calls[-1] == ["b", "c", "d"]
    group.stop()


def test_a_group_never_exceeds_its_size():
    gate = threading.Event()
    run = Recorder(gate)
    group = GroupCommit(run, max_size=2, threads=1, name="t")
    futures = [group.submit(x) for x in "abcde"]

    gate.set()

    assert [f.result(5) for f in futures] == list("ABCDE")
    assert max(len(c) for c in run.calls) <= 2
    group.stop()


def test_bad_data_fails_only_its_own_request():
    gate = threading.Event()
    run = Recorder(gate, bad="b")
    group = GroupCommit(run, max_size=10, threads=1, name="t", alone_on=(InvalidSubmission,))
    futures = [group.submit(x) for x in "abc"]

    gate.set()

    assert futures[0].result(5) == "A" and futures[2].result(5) == "C"
    with pytest.raises(InvalidSubmission):
        futures[1].result(5)
    group.stop()


def test_any_other_failure_fails_the_whole_group_without_a_retry():
    calls: list[list[str]] = []

    def down(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        raise StoreUnavailable("database down")

    group = GroupCommit(down, max_size=10, threads=1, name="t", alone_on=(InvalidSubmission,))

    with pytest.raises(StoreUnavailable):
        group.submit("a").result(5)
    assert calls == [["a"]]  # a failure that may follow a commit is never run again
    group.stop()


def test_a_caller_that_gave_up_is_skipped():
    gate = threading.Event()
    group = GroupCommit(Recorder(gate), max_size=10, threads=1, name="t")
    gone = group.submit("a")
    gone.cancel()
    kept = group.submit("b")

    gate.set()

    assert kept.result(5) == "B" and gone.cancelled()
    group.stop()


class Gate:
    """An admission hook: refuses the items in `refused`, records what it was asked."""

    def __init__(self, refused: str = "") -> None:
        self.asked: list[list[str]] = []
        self._refused = refused

    def __call__(self, items: Sequence[str]) -> list[Exception | None]:
        self.asked.append(list(items))
        return [RateLimited(f"{i} is over its rate", 1.0) if i in self._refused else None for i in items]


def test_a_refused_request_gets_its_refusal_and_the_rest_of_its_group_goes_through():
    gate, admit = threading.Event(), Gate(refused="b")
    run = Recorder(gate)
    group = GroupCommit(run, max_size=10, threads=1, name="t", admit=admit)
    first = group.submit("a")
    wait_for(lambda: not group._pending, "the worker to take the first request", 5)  # noqa: SLF001
    rest = [group.submit(x) for x in "bc"]

    gate.set()

    assert first.result(5) == "A" and rest[1].result(5) == "C"
    with pytest.raises(RateLimited, match="b is over its rate"):
        rest[0].result(5)
    assert run.calls == [["a"], ["c"]]  # the refused request never reached the batch function
    assert admit.asked == [["a"], ["b", "c"]]
    group.stop()


def test_a_request_tried_again_alone_is_admitted_only_once():
    gate, admit = threading.Event(), Gate()
    run = Recorder(gate, bad="b")
    group = GroupCommit(run, max_size=10, threads=1, name="t", alone_on=(InvalidSubmission,), admit=admit)
    futures = [group.submit(x) for x in "abc"]

    gate.set()

    assert futures[0].result(5) == "A" and futures[2].result(5) == "C"
    with pytest.raises(InvalidSubmission):
        futures[1].result(5)
    assert sorted(x for asked in admit.asked for x in asked) == ["a", "b", "c"]  # each paid its tokens once
    group.stop()


def test_a_failing_admission_fails_its_group_and_runs_nothing():
    run = Recorder()

    def down(items: Sequence[str]) -> list[Exception | None]:
        raise StoreUnavailable("database down: the backlog cannot be counted")

    group = GroupCommit(run, max_size=10, threads=1, name="t", admit=down)

    with pytest.raises(StoreUnavailable):
        group.submit("a").result(5)
    assert run.calls == []
    group.stop()


def test_a_broken_hook_answers_its_callers_and_the_worker_keeps_serving():
    calls = []

    def short(items: Sequence[str]) -> list[Exception | None]:
        calls.append(list(items))
        return [] if len(calls) == 1 else [None] * len(items)  # the first answer is one short: a bug

    group = GroupCommit(Recorder(), max_size=10, threads=1, name="t", admit=short)

    with pytest.raises(ValueError):
        group.submit("a").result(5)
    assert group.submit("b").result(5) == "B"  # the same worker thread, still alive
    group.stop()


class FirstHeld:
    """A batch function whose first call waits for a gate (a commit in progress); the later ones do not."""

    def __init__(self, gate: threading.Event) -> None:
        self.calls: list[list[str]] = []
        self._gate = gate

    def __call__(self, items: Sequence[str]) -> list[str]:
        held = not self.calls and not self._gate.is_set()
        self.calls.append(list(items))
        if held:
            self._gate.wait(5)
        return [i.upper() for i in items]


def committing_a(linger_s: float) -> tuple[threading.Event, FirstHeld, GroupCommit[str, str], Future[str]]:
    """Two workers with `linger_s`; "a" is submitted and its group held in its commit until the gate opens."""
    gate = threading.Event()
    run = FirstHeld(gate)
    group = GroupCommit(run, max_size=10, threads=2, name="t", linger_s=linger_s)
    first = group.submit("a")
    wait_for(lambda: run.calls == [["a"]], "the first group to be committing", 5)
    return gate, run, group, first


def test_while_a_group_commits_the_next_one_gathers_the_requests_that_arrive_meanwhile():
    gate, run, group, first = committing_a(linger_s=5.0)
    second = group.submit("b")  # the second worker is free, but waits for more while "a" commits
    with pytest.raises(AssertionError, match="timed out"):
        wait_for(lambda: len(run.calls) > 1, "a second group to run while the first commits", 1.0)
    rest = [second, *(group.submit(x) for x in "cd")]

    gate.set()

    # within a second, not after the 5 s linger: the gathering ends with the commit it waited for
    assert [f.result(1) for f in [first, *rest]] == ["A", "B", "C", "D"]
    assert run.calls == [["a"], ["b", "c", "d"]]
    # Whichever worker took that group, the other found nothing left and counted no group of its own: a lone
    # request still goes at once, not after the linger.
    for x in "efgh":
        assert group.submit(x).result(1) == x.upper()
    group.stop()


def test_a_lone_request_never_lingers():
    group = GroupCommit(Recorder(), max_size=10, threads=2, name="t", linger_s=5.0, gap_s=5.0)

    assert group.submit("a").result(1) == "A"  # nothing else commits: it goes at once, not after 5 s
    assert group.submit("b").result(1) == "B"  # and its group was alone: no gap to wait for either
    group.stop()


def with_concurrent_callers(gap_s: float, linger_s: float) -> tuple[Recorder, GroupCommit[str, str]]:
    """One worker whose latest group held two requests (its callers are concurrent)."""
    gate = threading.Event()
    run = Recorder(gate)
    group = GroupCommit(run, max_size=10, threads=1, name="t", linger_s=linger_s, gap_s=gap_s)
    first = group.submit("a")
    wait_for(lambda: not group._pending, "the worker to take the first request", 5)  # noqa: SLF001
    pair = [group.submit(x) for x in "bc"]
    gate.set()
    assert [f.result(5) for f in [first, *pair]] == ["A", "B", "C"]
    assert run.calls == [["a"], ["b", "c"]]
    return run, group


def test_concurrent_callers_requests_that_keep_coming_go_in_one_group():
    run, group = with_concurrent_callers(gap_s=30.0, linger_s=60.0)
    d = group.submit("d")  # nothing commits now; the group before was two requests: it waits for more
    wait_for(lambda: group._lingering == 1, "the worker to gather after the first request", 5)  # noqa: SLF001
    rest = [group.submit(str(i)) for i in range(9)]  # within the gap, until the group is full

    assert [f.result(5) for f in [d, *rest]] == ["D", *(str(i) for i in range(9))]
    assert run.calls[-1] == ["d", *(str(i) for i in range(9))]
    group.stop()


def test_a_group_of_concurrent_callers_goes_once_the_gap_passes_without_a_request():
    run, group = with_concurrent_callers(gap_s=0.3, linger_s=60.0)

    assert group.submit("d").result(5) == "D"  # after the gap, long before the linger
    assert run.calls[-1] == ["d"]
    assert not group._together  # noqa: SLF001  (that group was alone: the next request goes at once)
    group.stop()


def test_the_gap_is_counted_from_the_latest_request_and_never_past_the_deadline():
    _, group = with_concurrent_callers(gap_s=2.0, linger_s=60.0)
    with group._changed:  # noqa: SLF001  (the lock _gather_until is called under)
        group._last_arrival = 100.0  # noqa: SLF001
        assert group._gather_until(deadline=500.0) == 102.0  # noqa: SLF001
        group._last_arrival = 101.5  # noqa: SLF001  (another request: the gap starts again)
        assert group._gather_until(deadline=500.0) == 103.5  # noqa: SLF001
        assert group._gather_until(deadline=103.0) == 103.0  # noqa: SLF001  (the linger's end comes first)
        group._together = False  # noqa: SLF001
        assert group._gather_until(deadline=500.0) == 0.0  # noqa: SLF001  (callers alone: go now)
        group._committing = 1  # noqa: SLF001
        assert group._gather_until(deadline=500.0) == 500.0  # noqa: SLF001  (another commits: up to the linger)
        group._committing = 0  # noqa: SLF001
    group.stop()


def test_with_two_workers_a_group_gathers_across_the_end_of_the_commit_it_waited_for():
    gate = threading.Event()
    run = Recorder(gate)
    group = GroupCommit(run, max_size=10, threads=2, name="t", linger_s=60.0, gap_s=30.0)
    first = group.submit("a")  # one worker commits it, held at the gate
    wait_for(lambda: not group._pending, "a worker to take the first request", 5)  # noqa: SLF001
    pair = [group.submit(x) for x in "bc"]  # the other gathers them while "a" commits
    wait_for(lambda: group._lingering == 1, "the second worker to gather", 5)  # noqa: SLF001
    gate.set()  # "a" ends: its worker is free, the gatherer goes; then ["b", "c"] is a group of several
    assert [f.result(5) for f in [first, *pair]] == ["A", "B", "C"]
    assert run.calls == [["a"], ["b", "c"]]

    wait_for(lambda: group._idle == 2, "both workers to be free (no commit to gather behind)", 5)  # noqa: SLF001
    x = group.submit("x")  # nothing commits: the gap rule holds it for company
    wait_for(lambda: group._lingering >= 1, "a worker to gather after x", 5)  # noqa: SLF001  (both may)
    y = group.submit("y")
    rest = [group.submit(str(i)) for i in range(8)]  # the group is full: it goes without waiting out the gap

    assert [f.result(5) for f in [x, y, *rest]] == ["X", "Y", *(str(i) for i in range(8))]
    assert run.calls[-1] == ["x", "y", *(str(i) for i in range(8))]
    group.stop()


def test_a_group_gathers_no_longer_than_linger_s_however_long_gap_s_is():
    _, group = with_concurrent_callers(gap_s=60.0, linger_s=0.3)

    assert group.submit("d").result(5) == "D"  # the linger ends the gathering, not the 60 s gap
    group.stop()


def test_a_group_lingers_no_longer_than_linger_s_behind_a_slow_commit():
    gate, _, group, first = committing_a(linger_s=0.05)

    assert group.submit("b").result(2) == "B"  # while "a" is still held
    assert not first.done()
    gate.set()
    assert first.result(5) == "A"
    group.stop()


def test_a_request_wakes_an_idle_worker(monkeypatch: pytest.MonkeyPatch):
    """Requests wake only idle workers (not the lingering one): an idle worker must be woken, not left to its poll."""
    monkeypatch.setattr("observatory.grouping.IDLE_POLL_S", 60.0)
    group = GroupCommit(Recorder(), max_size=10, threads=1, name="t")
    wait_for(lambda: group._idle == 1, "the worker to wait for a request", 5)  # noqa: SLF001

    assert group.submit("a").result(5) == "A"
    wait_for(lambda: group._idle == 1, "the worker to wait again", 5)  # noqa: SLF001
    group.stop(timeout=5)
    assert not any(t.is_alive() for t in group._threads)  # noqa: SLF001  (stop wakes an idle worker too)


def test_a_full_group_wakes_the_lingering_worker():
    gate, run, group, first = committing_a(linger_s=60.0)
    rest = [group.submit("0")]
    wait_for(lambda: group._lingering == 1, "the second worker to linger over the forming group", 5)  # noqa: SLF001
    rest += [group.submit(str(i)) for i in range(1, 10)]  # max_size: the forming group is full

    assert [f.result(5) for f in rest] == [str(i) for i in range(10)]  # not after the linger
    assert not first.done() and run.calls[-1] == [str(i) for i in range(10)]
    gate.set()
    assert first.result(5) == "A"
    group.stop()


def test_stop_answers_the_requests_no_worker_took_and_refuses_new_ones():
    gate = threading.Event()
    run = Recorder(gate)
    group = GroupCommit(run, max_size=10, threads=1, name="t")
    held = group.submit("a")  # the only worker holds it until the gate opens
    wait_for(lambda: not group._pending, "the worker to take the first request", 5)  # noqa: SLF001
    queued = group.submit("b")
    stopping = threading.Thread(target=group.stop)
    stopping.start()
    wait_for(lambda: group._stop.is_set(), "stop to begin", 5)  # noqa: SLF001

    gate.set()
    stopping.join(10)

    assert not stopping.is_alive()
    assert held.result(5) == "A"  # the group in hand is committed and answered
    with pytest.raises(ShuttingDown):
        queued.result(5)  # never run
    with pytest.raises(ShuttingDown):
        group.submit("c").result(5)
    assert run.calls == [["a"]]


def test_stop_refuses_what_a_lingering_worker_gathered_rather_than_committing_it():
    gate = threading.Event()
    run = Recorder(gate)
    group = GroupCommit(run, max_size=10, threads=2, name="t", linger_s=30)
    held = group.submit("a")  # one worker commits it, held at the gate
    wait_for(lambda: not group._pending, "a worker to take the first request", 5)  # noqa: SLF001
    gathered = group.submit("b")  # the other worker lingers over it while the first commit runs
    wait_for(lambda: group._lingering == 1, "the second worker to linger", 5)  # noqa: SLF001
    stopping = threading.Thread(target=group.stop)
    stopping.start()
    wait_for(lambda: group._stop.is_set(), "stop to begin", 5)  # noqa: SLF001

    gate.set()
    stopping.join(10)

    assert held.result(5) == "A"
    with pytest.raises(ShuttingDown):
        gathered.result(5)
    assert run.calls == [["a"]]
