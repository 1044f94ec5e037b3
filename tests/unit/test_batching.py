"""Micro-batches of deliveries: whatever has arrived is handled together; a failure requeues only what the
batch had not settled yet."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from actors import batching
from actors.batching import MicroBatcher, Once, handle_or_requeue, split
from observatory.errors import StoreUnavailable
from observatory.ports import Delivery
from tests.helpers import wait_for
from tests.unit.fakes import FakeDelivery


def test_a_delivery_is_settled_once_whatever_is_called_after():
    inner = FakeDelivery(b"x")
    d = Once(inner)

    d.ack()
    d.reject(requeue=True)

    assert d.settled and inner.acked and inner.rejected is None


def test_a_failed_batch_requeues_only_what_it_had_not_settled(monkeypatch):
    monkeypatch.setattr(batching, "BACKOFF_BEFORE_REQUEUE_S", 0)
    inner = [FakeDelivery(b"a"), FakeDelivery(b"b")]
    batch = [Once(d) for d in inner]

    def half_then_down(ds: Sequence[Delivery]) -> None:
        ds[0].ack()
        raise StoreUnavailable("database down")

    handle_or_requeue(half_then_down, batch)

    assert inner[0].acked and inner[0].rejected is None
    assert not inner[1].acked and inner[1].rejected is True


def test_deliveries_that_arrive_while_a_batch_runs_form_the_next_batch():
    gate = threading.Event()
    batches: list[list[bytes]] = []

    def handle(ds: Sequence[Delivery]) -> None:
        gate.wait(5)
        batches.append([d.body for d in ds])
        for d in ds:
            d.ack()

    batcher = MicroBatcher(handle, max_size=3, threads=1, name="t")
    batcher.put(FakeDelivery(b"0"))
    wait_for(lambda: not batcher._items, "the first batch taken", 5)  # noqa: SLF001
    for i in range(1, 6):
        batcher.put(FakeDelivery(str(i).encode()))

    gate.set()

    wait_for(lambda: sum(map(len, batches)) == 6, "every delivery handled", 5)
    assert batches == [[b"0"], [b"1", b"2", b"3"], [b"4", b"5"]]
    batcher.stop()


def test_a_message_of_several_jobs_is_acked_once_all_its_parts_are():
    whole = FakeDelivery(b'[{"a": 1}, {"b": [2, 3]}, {"c": "x"}]', redelivered=True)
    parts = split(whole)
    assert [(p.body, p.redelivered) for p in parts] == [
        (b'{"a": 1}', True),
        (b'{"b": [2, 3]}', True),
        (b'{"c": "x"}', True),
    ]

    parts[2].ack()
    parts[0].reject(requeue=False)  # dead-lettered by the handler, with its body
    assert whole.calls == []
    parts[1].ack()
    assert whole.calls == ["ack"]


def test_a_message_of_several_jobs_goes_back_whole_when_any_part_asks_after_all_are_settled():
    whole = FakeDelivery(b"[1, 2, 3]")
    first, second, third = split(whole)

    second.reject(requeue=True)
    first.ack()
    assert whole.calls == []  # the first may still be running: nothing goes back before all are settled
    third.ack()
    assert whole.calls == ["reject requeue=True"]


def test_a_message_that_is_not_an_array_of_events_is_one_part_itself():
    # Nested past the JSON parser's depth: split runs on the consumer's thread, which must not die of it.
    for body in (b"not json", b"[]", b'{"event_type": "job.created"}', b"[" * 100_000):
        whole = FakeDelivery(body)
        assert split(whole) == [whole]


def _recording(batches: list[list[bytes]]):
    def handle(ds: Sequence[Delivery]) -> None:
        batches.append([d.body for d in ds])
        for d in ds:
            d.ack()

    return handle


def test_a_fill_window_gathers_what_arrives_after_the_first_delivery_until_the_batch_is_full():
    batches: list[list[bytes]] = []
    batcher = MicroBatcher(_recording(batches), max_size=2, threads=1, name="t", fill_s=60)
    batcher.put(FakeDelivery(b"a"))
    wait_for(lambda: not batcher._items, "the first delivery taken", 5)  # noqa: SLF001
    for body in (b"b", b"c", b"d"):
        batcher.put(FakeDelivery(body))

    wait_for(lambda: len(batches) == 2, "full batches handled without waiting out their windows", 5)
    assert batches == [[b"a", b"b"], [b"c", b"d"]]
    batcher.stop()


def test_a_batch_that_does_not_fill_goes_when_its_window_ends():
    batches: list[list[bytes]] = []
    handled_at: list[float] = []
    record = _recording(batches)

    def handle(ds: Sequence[Delivery]) -> None:
        handled_at.append(time.monotonic())
        record(ds)

    batcher = MicroBatcher(handle, max_size=10, threads=1, name="t", fill_s=0.3)
    put_at = time.monotonic()
    batcher.put(FakeDelivery(b"a"))

    wait_for(lambda: batches == [[b"a"]], "the lone delivery handled", 5)
    assert 0.3 <= handled_at[0] - put_at < 3  # the whole window waited out, and no longer than a loaded host adds
    batcher.stop()


def test_a_message_of_several_batches_wakes_a_worker_for_each(monkeypatch):
    monkeypatch.setattr(batching, "IDLE_POLL_S", 60)  # an idle worker that is not woken would sleep past the test
    gate = threading.Event()
    running: list[list[bytes]] = []

    def handle(ds: Sequence[Delivery]) -> None:
        running.append([d.body for d in ds])
        gate.wait(10)
        for d in ds:
            d.ack()

    batcher = MicroBatcher(handle, max_size=2, threads=3, name="t")
    batcher.put_many([FakeDelivery(str(i).encode()) for i in range(5)])

    wait_for(lambda: len(running) == 3, "three batches in flight at once", 5)
    gate.set()
    assert sorted(running) == [[b"0", b"1"], [b"2", b"3"], [b"4"]]
    batcher.stop()


def test_stop_wakes_idle_workers_at_once(monkeypatch):
    monkeypatch.setattr(batching, "IDLE_POLL_S", 60)
    batcher = MicroBatcher(_recording([]), max_size=2, threads=2, name="t")
    started = time.monotonic()
    batcher.stop()
    assert time.monotonic() - started < 5  # not the idle poll's 60 s (nor the join's 30)


def test_a_message_of_one_batch_is_handled_whole():
    batches: list[list[bytes]] = []
    batcher = MicroBatcher(_recording(batches), max_size=8, threads=2, name="t")
    batcher.put_many([FakeDelivery(str(i).encode()) for i in range(5)])

    wait_for(lambda: sum(map(len, batches)) == 5, "every part handled", 5)
    assert batches == [[b"0", b"1", b"2", b"3", b"4"]]
    batcher.stop()
