"""Bus conformance: every implementation of `Bus` must pass these."""

from __future__ import annotations

import threading
import uuid

import pytest

from observatory.adapters.rabbitmq import RabbitBus
from observatory.ports import Bus, Delivery
from tests.test_event_store import lifecycle


@pytest.fixture(params=["rabbitmq"])
def bus(request, settings) -> Bus:
    ns = f"{settings.namespace}_{uuid.uuid4().hex[:6]}"  # fresh, empty queues per test
    b = {"rabbitmq": lambda: RabbitBus(settings.amqp_url, ns)}[request.param]()
    b.setup()
    yield b
    b.close()


def take(bus: Bus, queue: str, n: int, ack: bool, timeout: float = 10.0) -> list[Delivery]:
    """Consume until n messages arrived (acking them or not), then stop the consumer."""
    got: list[Delivery] = []
    stop = threading.Event()

    def on_message(d: Delivery) -> None:
        got.append(d)
        if ack:
            d.ack()
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


def test_unacked_message_is_redelivered_when_its_consumer_dies(bus):
    created = lifecycle(uuid.uuid4())[0]
    bus.publish(created)

    [first] = take(bus, "jobs", 1, ack=False)  # consumer stops without acking: its connection closes
    [again] = take(bus, "jobs", 1, ack=True)

    assert not first.redelivered
    assert again.redelivered and again.body == first.body
    assert bus.depth("jobs") == 0
