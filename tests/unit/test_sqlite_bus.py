"""The embedded bus: what the shared conformance suite (tests/test_bus.py) leaves unpinned."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from contracts import EventType, JobStatus
from observatory.adapters import sqlite_bus
from observatory.adapters.sqlite_bus import SQLiteBus
from observatory.errors import BusUnavailable
from observatory.ports import Delivery
from tests.helpers import wait_for
from tests.unit.fakes import job_event

T = 1_700_000_000_000_000  # a fixed "now", in microseconds
WAIT_S = 10.0


@pytest.fixture
def bus(tmp_path) -> Iterator[SQLiteBus]:
    b = SQLiteBus(tmp_path / "bus.sqlite3", lease_s=60.0)  # a lease that never runs out during a test
    b.setup()
    yield b
    b.close()


def created(job_type: str = "echo"):
    event = job_event(uuid.uuid4(), 0, JobStatus.PENDING, EventType.JOB_CREATED)
    return event.model_copy(update={"payload": event.payload.model_copy(update={"job_type": job_type})})


def take_one(bus: SQLiteBus, queue: str, settle: str) -> Delivery:
    """Consume one message, settle it (`ack`, `requeue`, `keep`), and stop the consumer."""
    got: list[Delivery] = []
    stop = threading.Event()

    def on_message(d: Delivery) -> None:
        if got:
            return
        got.append(d)
        if settle == "ack":
            d.ack()
        elif settle == "requeue":
            d.reject(requeue=True)
        stop.set()

    consumer = threading.Thread(target=bus.consume, args=(queue, on_message, 1, stop), daemon=True)
    consumer.start()
    stop.wait(WAIT_S)
    stop.set()
    consumer.join(WAIT_S)
    assert got, f"nothing arrived on {queue}"
    return got[0]


def test_message_rejected_with_requeue_comes_back_at_once_as_redelivered(bus):
    bus.publish(created())
    first = take_one(bus, "jobs", settle="requeue")

    again = take_one(bus, "jobs", settle="ack")

    assert (first.redelivered, again.redelivered) == (False, True)
    assert again.body == first.body
    assert bus.depth("jobs") == 0


def test_message_rejected_with_requeue_is_ready_again_while_its_consumer_runs(bus):
    bus.publish(created())
    got: list[Delivery] = []
    stop = threading.Event()

    def on_message(d: Delivery) -> None:
        got.append(d)
        if len(got) == 1:
            d.reject(requeue=True)  # the same consumer takes it again on its next poll
        else:
            d.ack()
            stop.set()

    consumer = threading.Thread(target=bus.consume, args=("jobs", on_message, 1, stop), daemon=True)
    consumer.start()
    stop.wait(WAIT_S)
    stop.set()
    consumer.join(WAIT_S)

    assert [d.redelivered for d in got] == [False, True]


def test_scheduled_message_is_due_exactly_after_its_delay(bus, monkeypatch):
    monkeypatch.setattr(sqlite_bus, "now_us", lambda: T)
    bus.schedule(created(), 2.0)

    monkeypatch.setattr(sqlite_bus, "now_us", lambda: T + 2_000_000 - 1)
    before = bus.depth("jobs")
    monkeypatch.setattr(sqlite_bus, "now_us", lambda: T + 2_000_000)
    due = bus.depth("jobs")

    assert (before, due) == (0, 1)


def test_work_of_an_inline_job_type_goes_to_the_inline_batches_queue(tmp_path):
    b = SQLiteBus(tmp_path / "bus.sqlite3", inline_types={"quick"})
    b.setup()

    b.publish_many([created("quick"), created("echo")])

    queues = ("inline_batches", "inline", "jobs", "events", "batches")
    assert [b.depth(q) for q in queues] == [1, 0, 1, 1, 1]  # the aggregators' copy of the inline work on batches


def test_depth_of_an_unknown_queue_names_it(bus):
    with pytest.raises(BusUnavailable, match="no queue 'nope'"):
        bus.depth("nope")


def test_unusable_file_is_a_bus_unavailable_error(tmp_path):
    with pytest.raises(BusUnavailable):
        SQLiteBus(tmp_path).setup()  # a folder, not a database file


class Consumer:
    """`bus.consume` in a thread, for a `with` block; keeps what it got and any error it raised."""

    def __init__(self, bus: SQLiteBus, queue: str, prefetch: int = 10) -> None:
        self.got: list[Delivery] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bus, queue, prefetch), daemon=True)

    def _run(self, bus: SQLiteBus, queue: str, prefetch: int) -> None:
        try:
            bus.consume(queue, self.got.append, prefetch, self._stop)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.errors.append(e)

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.got) >= n, f"{len(self.got)} of {n} messages arrived"

    def __enter__(self) -> Consumer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)


def test_stopped_consumer_gives_its_unacked_messages_back_at_once(bus):
    bus.publish(created())
    with Consumer(bus, "jobs") as c:
        c.wait_for(1)
        held = bus.depth("jobs")

    assert (held, bus.depth("jobs")) == (0, 1)  # back well before its 60 s lease runs out
    assert c.errors == []


def test_stopped_consumer_is_no_longer_counted_at_once(bus):
    with Consumer(bus, "jobs") as c:
        deadline = time.monotonic() + WAIT_S
        while bus.consumers("jobs") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        attached = bus.consumers("jobs")

    assert (attached, bus.consumers("jobs")) == (1, 0)
    assert c.errors == []


def test_consumer_keeps_renewing_the_leases_of_several_messages(tmp_path):
    lease_s = 0.3
    path = tmp_path / "bus.sqlite3"
    holder, other = SQLiteBus(path, lease_s), SQLiteBus(path, lease_s)
    holder.setup()
    holder.publish_many([created(), created()])

    with Consumer(holder, "jobs", prefetch=2) as first:
        first.wait_for(2)
        with Consumer(other, "jobs") as second:
            time.sleep(lease_s * 4)  # held unacked well past the lease, renewed all along
        for d in first.got:
            d.ack()

    assert (len(first.got), second.got, first.errors) == (2, [], [])


def test_held_message_lease_lasts_exactly_lease_s(tmp_path, monkeypatch):
    b = SQLiteBus(tmp_path / "bus.sqlite3", lease_s=2.0)
    b.setup()
    monkeypatch.setattr(sqlite_bus, "now_us", lambda: T)
    b.publish(created())
    holding, release = threading.Event(), threading.Event()

    def hold(d: Delivery) -> None:  # blocks the consume loop, so nothing renews the lease meanwhile
        holding.set()
        release.wait(WAIT_S)

    stop = threading.Event()
    consumer = threading.Thread(target=b.consume, args=("jobs", hold, 1, stop), daemon=True)
    consumer.start()
    assert holding.wait(WAIT_S)
    monkeypatch.setattr(sqlite_bus, "now_us", lambda: T + 2_000_000)
    at_lease_end = b.depth("jobs")
    monkeypatch.setattr(sqlite_bus, "now_us", lambda: T + 2_000_001)
    past_lease_end = b.depth("jobs")
    stop.set()
    release.set()
    consumer.join(WAIT_S)

    assert (at_lease_end, past_lease_end) == (0, 1)


def test_idle_consumer_backs_off_between_polls(bus, monkeypatch):
    polls: list[int] = []
    claim = bus._claim
    monkeypatch.setattr(bus, "_claim", lambda *a: polls.append(1) or claim(*a))

    with Consumer(bus, "jobs"):
        time.sleep(1.0)  # polls after 0.02, 0.04, 0.08, 0.16, then every 0.25 s: about 7 in a second

    assert 3 <= len(polls) <= 15


def stored(bus: SQLiteBus, queue: str) -> int:
    """Messages of a queue in the file, whether ready, leased or not yet due."""
    with sqlite3.connect(bus._db.path) as conn:  # noqa: SLF001
        return int(conn.execute("SELECT count(*) FROM messages WHERE queue = ?", (queue,)).fetchone()[0])


def acking_five(bus: SQLiteBus, stop: threading.Event, stop_at_once: bool) -> list[Delivery]:
    """Five messages consumed and acked together when the fifth arrives (from the consume thread itself, so
    none is settled in between); the consumer is stopped at once, or once the acks are in the file."""
    bus.publish_many([created() for _ in range(5)])
    got: list[Delivery] = []

    def on_message(d: Delivery) -> None:
        got.append(d)
        if len(got) == 5:
            for each in got:
                each.ack()
            if stop_at_once:
                stop.set()

    consumer = threading.Thread(target=bus.consume, args=("jobs", on_message, 5, stop), daemon=True)
    consumer.start()
    if stop_at_once:
        stop.wait(WAIT_S)
    else:
        wait_for(lambda: stored(bus, "jobs") == 0, "the acks settled", WAIT_S)
    stop.set()
    consumer.join(WAIT_S)
    return got


def test_a_batch_of_acks_is_one_transaction(bus, monkeypatch):
    writes: list[int] = []
    settle_many = bus._settle_many  # noqa: SLF001
    monkeypatch.setattr(
        bus, "_settle_many", lambda settled, owner: writes.append(len(settled)) or settle_many(settled, owner)
    )

    got = acking_five(bus, threading.Event(), stop_at_once=False)

    assert (len(got), writes) == (5, [5])


def test_acks_given_right_before_a_stop_are_settled_not_handed_back(bus):
    got = acking_five(bus, threading.Event(), stop_at_once=True)

    assert (len(got), stored(bus, "jobs")) == (5, 0)
