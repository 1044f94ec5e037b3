"""Bus conformance: every implementation of `Bus` must pass these."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

import pytest

from observatory.ports import Bus, Delivery
from tests.crash_consumer import make_bus
from tests.test_event_store import lifecycle

LEASE_S = 1.0  # the embedded bus redelivers a dead consumer's messages after this


@pytest.fixture(params=["rabbitmq", "sqlite"])
def bus_where(request, settings, tmp_path) -> tuple[str, str]:
    if request.param == "rabbitmq":
        return "rabbitmq", f"{settings.amqp_url} {settings.namespace}_{uuid.uuid4().hex[:6]}"  # fresh queues
    return "sqlite", str(tmp_path / "bus.sqlite3")


@pytest.fixture
def bus(bus_where) -> Bus:
    b = make_bus(*bus_where, LEASE_S)
    b.setup()
    yield b
    b.close()


def take(bus: Bus, queue: str, n: int, ack: bool, timeout: float = 10.0, drop: bool = False) -> list[Delivery]:
    """Consume until n messages arrived (acking, dropping or keeping them), then stop the consumer."""
    got: list[Delivery] = []
    stop = threading.Event()

    def on_message(d: Delivery) -> None:
        got.append(d)
        if ack:
            d.ack()
        elif drop:
            d.reject(requeue=False)
        if len(got) >= n:
            stop.set()

    t = threading.Thread(target=bus.consume, args=(queue, on_message, 10, stop), daemon=True)
    t.start()
    stop.wait(timeout)
    stop.set()
    t.join(timeout)
    return got


def test_created_event_reaches_jobs_and_events_queues(bus):
    created = lifecycle(uuid.uuid4())[0]

    bus.publish(created)

    assert [d.body for d in take(bus, "jobs", 1, ack=True)] == [created.model_dump_json().encode()]
    assert len(take(bus, "events", 1, ack=True)) == 1


def test_other_events_reach_only_the_events_queue(bus):
    _, started, completed = lifecycle(uuid.uuid4())
    bus.publish(started)
    bus.publish(completed)

    assert len(take(bus, "events", 2, ack=True)) == 2
    assert bus.depth("jobs") == 0


def test_messages_arrive_in_publish_order(bus):
    events = [lifecycle(uuid.uuid4())[0] for _ in range(5)]
    for e in events:
        bus.publish(e)

    got = take(bus, "jobs", 5, ack=True)

    assert [d.body for d in got] == [e.model_dump_json().encode() for e in events]


def test_unacked_message_is_redelivered_when_its_consumer_stops(bus):
    created = lifecycle(uuid.uuid4())[0]
    bus.publish(created)

    [first] = take(bus, "jobs", 1, ack=False)  # consumer stops without acking
    [again] = take(bus, "jobs", 1, ack=True)

    assert not first.redelivered
    assert again.redelivered and again.body == first.body
    assert bus.depth("jobs") == 0


def test_unacked_message_is_redelivered_when_its_consumer_process_dies(bus, bus_where):
    created = lifecycle(uuid.uuid4())[0]
    bus.publish(created)

    proc = subprocess.run(
        [sys.executable, "-m", "tests.crash_consumer", *bus_where, str(LEASE_S)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    [again] = take(bus, "jobs", 1, ack=True, timeout=LEASE_S * 10)

    assert proc.stdout.strip() == "took"
    assert again.redelivered and again.body == created.model_dump_json().encode()


def test_rejected_without_requeue_is_dropped(bus):
    bus.publish(lifecycle(uuid.uuid4())[0])

    assert len(take(bus, "jobs", 1, ack=False, drop=True)) == 1
    assert take(bus, "jobs", 1, ack=True, timeout=1.5) == []
