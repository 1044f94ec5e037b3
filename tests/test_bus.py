"""Bus conformance: every implementation of `Bus` must pass these."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from contracts import EventBatch
from observatory.adapters.rabbitmq import DELAY_BUCKET_FACTOR
from observatory.adapters.sqlite_bus import SQLiteBus
from observatory.errors import BusUnavailable
from observatory.ports import Bus, Delivery
from tests.crash_consumer import make_bus
from tests.helpers import scratch, wait_for
from tests.test_event_store import lifecycle

LEASE_S = 1.0  # the embedded bus redelivers a dead consumer's messages after this
DELAY_S = 1.5  # short scheduling delays keep these tests fast
POLL_SLACK_S = 0.75  # a consumer's polling and the broker's dead-lettering, on top of a scheduled delay
WAIT_S = 10.0  # for a condition that holds within milliseconds when all is well


@pytest.fixture(params=["rabbitmq", "sqlite"])
def bus_where(request, settings, tmp_path) -> tuple[str, str]:
    if request.param == "rabbitmq":
        fresh = scratch(f"{settings.namespace}_{uuid.uuid4().hex[:6]}")  # fresh queues
        return "rabbitmq", f"{settings.amqp_url} {fresh}"
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


@contextlib.contextmanager
def consuming(bus: Bus, queue: str, on_message: Callable[[Delivery], None], prefetch: int = 10) -> Iterator[None]:
    """A consumer running in a thread for the duration of the block."""
    stop = threading.Event()
    t = threading.Thread(target=bus.consume, args=(queue, on_message, prefetch, stop), daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(10)


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


def test_scheduled_message_arrives_on_jobs_after_its_delay_and_not_before(bus):
    created = lifecycle(uuid.uuid4())[0]
    arrived: list[tuple[float, bytes]] = []

    def on_message(d: Delivery) -> None:
        arrived.append((time.monotonic(), d.body))
        d.ack()

    with consuming(bus, "jobs", on_message):
        wait_for(lambda: bus.consumers("jobs") == 1, "the consumer to attach", WAIT_S)
        before = time.monotonic()
        bus.schedule(created, DELAY_S)
        after = time.monotonic()
        wait_for(lambda: arrived, "the scheduled message", DELAY_S * 4)

    [(at, body)] = arrived
    assert body == created.model_dump_json().encode()
    assert at - before >= DELAY_S
    assert at - after <= DELAY_S * DELAY_BUCKET_FACTOR + POLL_SLACK_S


def test_scheduled_message_does_not_reach_the_events_queue(bus):
    created = lifecycle(uuid.uuid4())[0]

    bus.schedule(created, 0.5)

    assert len(take(bus, "jobs", 1, ack=True)) == 1
    assert bus.depth("events") == 0


def test_scheduled_messages_arrive_in_delay_order(bus):
    later, sooner = (lifecycle(uuid.uuid4())[0] for _ in range(2))

    bus.schedule(later, DELAY_S + 1.0)
    bus.schedule(sooner, DELAY_S)

    got = take(bus, "jobs", 2, ack=True, timeout=(DELAY_S + 1.0) * 4)
    assert [d.body for d in got] == [sooner.model_dump_json().encode(), later.model_dump_json().encode()]


def test_no_consumers_on_a_queue_nobody_consumes(bus):
    assert bus.consumers("jobs") == 0
    assert bus.consumers("events") == 0


def test_an_attached_consumer_is_counted_on_its_queue_only(bus):
    with consuming(bus, "jobs", lambda d: d.ack()):
        wait_for(lambda: bus.consumers("jobs") == 1, "one consumer on jobs", WAIT_S)

        assert bus.consumers("events") == 0


def test_a_stopped_consumer_is_no_longer_counted(bus):
    with consuming(bus, "jobs", lambda d: d.ack()):
        wait_for(lambda: bus.consumers("jobs") == 1, "one consumer on jobs", WAIT_S)

    wait_for(lambda: bus.consumers("jobs") == 0, "the stopped consumer to be gone", WAIT_S)


def test_depth_counts_the_messages_waiting_on_each_queue(bus):
    for _ in range(3):
        bus.publish(lifecycle(uuid.uuid4())[0])
    bus.publish(lifecycle(uuid.uuid4())[1])  # job.started: the events queue only

    assert (bus.depth("jobs"), bus.depth("events")) == (3, 4)


def test_depth_does_not_count_a_message_held_by_a_consumer(bus):
    for _ in range(2):
        bus.publish(lifecycle(uuid.uuid4())[0])
    held: list[Delivery] = []

    with consuming(bus, "jobs", held.append, prefetch=1):
        wait_for(lambda: held, "a delivery", WAIT_S)

        assert bus.depth("jobs") == 1


def test_depth_does_not_count_a_scheduled_message_before_its_delay(bus):
    bus.schedule(lifecycle(uuid.uuid4())[0], 60.0)

    assert bus.depth("jobs") == 0


def test_embedded_consumer_keeps_renewing_the_lease_of_a_message_it_holds(tmp_path):
    """A live consumer that holds a message past its lease keeps it: only a dead one loses it."""
    path = tmp_path / "bus.sqlite3"
    with contextlib.closing(SQLiteBus(path, LEASE_S)) as bus, contextlib.closing(SQLiteBus(path, LEASE_S)) as other:
        bus.setup()
        bus.publish(lifecycle(uuid.uuid4())[0])
        first: list[Delivery] = []
        second: list[Delivery] = []

        with consuming(bus, "jobs", first.append, prefetch=1):  # full: it cannot take the message back itself
            wait_for(lambda: first, "the first consumer to take the message", WAIT_S)
            with consuming(other, "jobs", second.append):
                time.sleep(LEASE_S * 3)  # hold it unacked well past its lease, both consumers polling
                assert second == []
                first[0].ack()
                time.sleep(LEASE_S * 1.5)  # long enough for a message left behind to be redelivered

        assert (len(first), second) == (1, [])
        assert bus.depth("jobs") == 0


def test_a_published_batch_arrives_whole_and_in_order(bus):
    """Work events go one per message (to the processors and the aggregators); every other event of the publish
    goes in one message of several, in the order given, on the batches queue (contracts: event_batch)."""
    jobs = [lifecycle(uuid.uuid4()) for _ in range(3)]
    batch = [e for events in jobs for e in events]

    bus.publish_many(batch)

    created = [j[0] for j in jobs]
    assert [d.body for d in take(bus, "jobs", 3, ack=True)] == [e.model_dump_json().encode() for e in created]
    assert [d.body for d in take(bus, "events", 3, ack=True)] == [e.model_dump_json().encode() for e in created]
    [many] = take(bus, "batches", 1, ack=True)
    assert EventBatch.model_validate_json(many.body).root == [e for j in jobs for e in j[1:]]
    assert bus.depth("events") == bus.depth("batches") == 0


def test_work_of_a_single_inline_job_goes_as_an_array_to_the_processors_and_the_aggregators(bus_where):
    inline = make_bus(*bus_where, LEASE_S, inline_types=("noop",))
    inline.setup()
    created, started, _ = lifecycle(uuid.uuid4(), "noop")
    other = lifecycle(uuid.uuid4(), "hash")[0]
    try:
        inline.publish_many([created, started, other])

        [work] = take(inline, "inline_batches", 1, ack=True)
        assert EventBatch.model_validate_json(work.body).root == [created]
        assert [d.body for d in take(inline, "jobs", 1, ack=True)] == [other.model_dump_json().encode()]
        assert [d.body for d in take(inline, "events", 2, ack=True)] == [
            e.model_dump_json().encode() for e in (other, started)
        ]
        [copy] = take(inline, "batches", 1, ack=True)
        assert copy.body == work.body
        assert [inline.depth(q) for q in ("inline", "inline_batches", "jobs", "events", "batches")] == [0] * 5
    finally:
        inline.close()


def test_work_of_several_inline_jobs_goes_in_one_message_and_their_events_with_the_others(bus_where):
    """Several inline jobs' work in one publish: one message of all of it on `inline_batches` and the same on
    `batches`, ahead of the publish's one message of its other events (nothing on the queues of one event)."""
    inline = make_bus(*bus_where, LEASE_S, inline_types=("noop",))
    inline.setup()
    first, second = (lifecycle(uuid.uuid4(), "noop") for _ in range(2))
    other = lifecycle(uuid.uuid4(), "hash")[0]
    try:
        inline.publish_many([first[0], other, second[0], first[1], second[1]])

        [work] = take(inline, "inline_batches", 1, ack=True)
        assert EventBatch.model_validate_json(work.body).root == [first[0], second[0]]
        assert [d.body for d in take(inline, "jobs", 1, ack=True)] == [other.model_dump_json().encode()]
        assert [d.body for d in take(inline, "events", 1, ack=True)] == [other.model_dump_json().encode()]
        copy, events = take(inline, "batches", 2, ack=True)
        assert copy.body == work.body
        assert EventBatch.model_validate_json(events.body).root == [first[1], second[1]]
        assert [inline.depth(q) for q in ("inline", "inline_batches", "jobs", "events", "batches")] == [0] * 5
    finally:
        inline.close()


def test_a_draining_consumer_takes_no_more_and_settles_what_it_holds(bus):
    """Stopped with `drain_s`, a consumer keeps its connection until the messages it handed over are acked:
    they are not delivered again, and the ones it never took stay on the queue for another consumer."""
    for e in [lifecycle(uuid.uuid4())[0] for _ in range(5)]:
        bus.publish(e)
    held: list[Delivery] = []
    stop = threading.Event()
    t = threading.Thread(target=bus.consume, args=("jobs", held.append, 2, stop, 30.0), daemon=True)
    t.start()
    wait_for(lambda: len(held) == 2, "the consumer to hold its prefetch of two", WAIT_S)

    stop.set()
    time.sleep(POLL_SLACK_S)  # a consumer that ignored the stop would take the next ones now
    still_draining = t.is_alive()
    for d in held:  # the jobs finish, commit, then ack
        d.ack()
    t.join(WAIT_S)

    assert still_draining and not t.is_alive() and len(held) == 2
    rest = take(bus, "jobs", 3, ack=True)
    assert len(rest) == 3 and not any(d.redelivered for d in rest)
    assert {d.body for d in rest}.isdisjoint({d.body for d in held})
    assert bus.depth("jobs") == 0


def test_a_draining_consumer_gives_back_what_is_unsettled_at_its_limit(bus):
    bus.publish(lifecycle(uuid.uuid4())[0])
    held: list[Delivery] = []
    stop = threading.Event()
    t = threading.Thread(target=bus.consume, args=("jobs", held.append, 1, stop, 0.5), daemon=True)
    t.start()
    wait_for(lambda: len(held) == 1, "the consumer to take the message", WAIT_S)

    stop.set()
    t.join(WAIT_S)

    assert not t.is_alive()
    [again] = take(bus, "jobs", 1, ack=True, timeout=LEASE_S + WAIT_S)
    assert again.redelivered and again.body == held[0].body


def test_rabbitmq_publish_goes_through_after_its_cached_connection_was_lost(settings):
    """A publisher's connection is cached per thread; when it is lost (a broker restart, a network cut), the
    next publish fails on it, opens a new one and goes through."""
    bus = make_bus("rabbitmq", f"{settings.amqp_url} {scratch(f'{settings.namespace}_{uuid.uuid4().hex[:6]}')}", 0)
    bus.setup()
    try:
        first, second = lifecycle(uuid.uuid4())[0], lifecycle(uuid.uuid4())[0]
        bus.publish(first)
        cached = bus._local.conn  # type: ignore[attr-defined]
        with socket.socket(fileno=os.dup(cached._impl._transport._sock.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)  # what the connection's socket sees when the broker goes away

        bus.publish(second)

        assert bus._local.conn is not cached  # type: ignore[attr-defined]
        assert [d.body for d in take(bus, "jobs", 2, ack=True)] == [
            e.model_dump_json().encode() for e in (first, second)
        ]
    finally:
        bus.close()


class _Doorman:
    """A TCP relay on loopback to the real broker that closes the first `turn_away` connections at once (what a
    client sees while the broker restarts), then relays every byte both ways."""

    def __init__(self, target: tuple[str, int], turn_away: int) -> None:
        self._target, self._turn_away = target, turn_away
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listening socket was shut down: done
            while True:
                client, _ = self._server.accept()
                self.connections += 1
                if self.connections <= self._turn_away:
                    client.close()
                    continue
                upstream = socket.create_connection(self._target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        """One direction; the first to end shuts both sockets down (ending the other) and closes its source."""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        src.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not)
        self._server.close()


def test_rabbitmq_publish_tries_again_when_a_new_connection_is_refused(settings):
    """Opening a connection that the broker drops at once (it is restarting) is tried again like a lost
    cached one: the publish goes through, with no error for the caller."""
    url = urlsplit(settings.amqp_url)
    doorman = _Doorman((url.hostname or "127.0.0.1", url.port or 5672), turn_away=1)
    ns = scratch(f"{settings.namespace}_{uuid.uuid4().hex[:6]}")
    user, at, _ = url.netloc.rpartition("@")
    relayed = url._replace(netloc=f"{user}{at}127.0.0.1:{doorman.port}").geturl()
    bus, direct = make_bus("rabbitmq", f"{relayed} {ns}", 0), make_bus("rabbitmq", f"{settings.amqp_url} {ns}", 0)
    try:
        direct.setup()
        event = lifecycle(uuid.uuid4())[0]
        bus.publish(event)

        assert doorman.connections == 2
        assert [d.body for d in take(direct, "jobs", 1, ack=True)] == [event.model_dump_json().encode()]
    finally:
        bus.close()
        direct.close()
        doorman.close()


def test_rabbitmq_with_a_host_that_does_not_resolve_is_an_unavailable_bus_naming_what_to_check():
    """pika re-raises a failed name lookup as is (socket.gaierror): publishing, asking and consuming all answer
    the bus's own error instead, so the gateway leaves jobs for the sweeper and consumers retry."""
    bus = make_bus("rabbitmq", "amqp://guest:guest@no-such-host.invalid:5672/%2F nowhere", 0)
    stop = threading.Event()
    event = lifecycle(uuid.uuid4())[0]
    for call in (lambda: bus.publish(event), bus.ping, lambda: bus.consume("jobs", print, 1, stop)):
        with pytest.raises(BusUnavailable, match="check AMQP_URL and that the broker is up"):
            call()
