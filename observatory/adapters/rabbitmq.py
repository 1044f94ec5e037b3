"""The message bus on RabbitMQ (pika).

pika is not thread-safe, so every thread that publishes gets its own connection (a thread-local), and a
consumer owns the connection of the thread that calls `consume`. Handlers may run on other threads:
their acks are handed back to the consumer thread with `add_callback_threadsafe`, coalesced (see _Settler).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils.connection_workflow import AMQPConnectorException
from pika.exceptions import AMQPError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from contracts import EventEnvelope
from observatory.errors import BusUnavailable
from observatory.ports import Delivery
from observatory.topology import ARRAY_KEYS, QUEUES, RETRY_KEY, body, messages

PUBLISH_ATTEMPTS = 3  # a dropped cached connection is re-opened; past this the broker is really down
POLL_S = 0.5  # how long a consume loop waits for traffic before it looks at its stop flag
# Delayed retries wait in per-bucket queues with per-message TTL, then dead-letter back to the jobs
# queue. A queue only expires its head, so each bucket holds delays within this factor of each other:
# a message waits at most that much longer than asked.
DELAY_BUCKET_FACTOR = 1.25
# Per-message TTLs are 32-bit milliseconds, so no delay bucket is numbered past log_1.25(2**32) ~ 99.4.
DELAY_BUCKETS = int(math.log(2**32, DELAY_BUCKET_FACTOR)) + 1
EARLY_SLACK_MS = 5  # added to every delay: see schedule
# What a connection to the broker can fail with: pika's errors, and what its connect re-raises as is (a host
# name that does not resolve, a TLS set-up error, the connect's own time limit).
BROKER_ERRORS: tuple[type[Exception], ...] = (AMQPError, AMQPConnectorException, OSError)


class _Settler:
    """One consumer's acks and rejects, sent from its connection's thread. Acks from handler threads are
    collected, and one callback sends whatever has collected by the time it runs: a single `basic.ack
    multiple` up to the highest tag below which every delivery is acked, then the rest one by one. A
    micro-batch of 64 messages costs the broker one ack frame, not 64. `held`: deliveries not yet settled."""

    def __init__(self, conn: pika.BlockingConnection, ch: BlockingChannel) -> None:
        self._conn, self._ch = conn, ch
        self._lock = threading.Lock()
        self._acked: list[int] = []
        self._flush_due = False
        self._open: dict[int, None] = {}  # unsettled tags in delivery order (connection thread only)
        self.held = 0

    def delivered(self, tag: int) -> None:
        """Connection thread: a new delivery."""
        self._open[tag] = None
        with self._lock:
            self.held += 1

    def ack(self, tag: int) -> None:
        # `held` drops only once the ack is in a queued flush: a draining consumer that sees 0 and runs its
        # last callbacks sends it.
        try:
            with self._lock:
                self._acked.append(tag)
                if self._flush_due:
                    return  # the flush already queued takes it
                self._flush_due = True
            self._call(self._flush)
        finally:
            self._release()

    def reject(self, tag: int, requeue: bool) -> None:
        try:
            self._call(functools.partial(self._reject, tag, requeue))
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self.held -= 1

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            self._conn.add_callback_threadsafe(fn)
        except AMQPError:
            pass  # connection gone: the broker redelivers the unsettled messages, which is what we want

    def _reject(self, tag: int, requeue: bool) -> None:
        self._open.pop(tag, None)
        self._ch.basic_reject(tag, requeue=requeue)

    def _flush(self) -> None:
        with self._lock:
            acked, self._acked, self._flush_due = set(self._acked), [], False
        upto = None
        for tag in self._open:  # ascending: the tags of one channel only grow
            if tag not in acked:
                break
            upto = tag
        if upto is not None:
            self._ch.basic_ack(upto, multiple=True)
            for tag in [t for t in self._open if t <= upto]:
                del self._open[tag]
                acked.discard(tag)
        for tag in sorted(acked):
            self._open.pop(tag, None)
            self._ch.basic_ack(tag)


def _unavailable(e: BaseException) -> BusUnavailable:
    return BusUnavailable(f"RabbitMQ: {e!r}; check AMQP_URL and that the broker is up")


def _close(conn: pika.BlockingConnection) -> None:
    if conn.is_open:
        try:
            conn.close()
        except AMQPError:
            pass


class _PikaDelivery:
    def __init__(self, settler: _Settler, tag: int, body: bytes, redelivered: bool) -> None:
        self.body = body
        self.redelivered = redelivered
        self._settler, self._tag = settler, tag

    def ack(self) -> None:
        self._settler.ack(self._tag)

    def reject(self, requeue: bool) -> None:
        self._settler.reject(self._tag, requeue)


class RabbitBus:
    def __init__(self, url: str, namespace: str, inline_types: Collection[str] = ()) -> None:
        self._inline = frozenset(inline_types)
        self._params = pika.URLParameters(url)
        self._params.heartbeat = 30
        self._params.blocked_connection_timeout = 30
        self._params.socket_timeout = 5
        self._exchange = namespace
        self._ns = namespace
        self._local = threading.local()
        self._delay_queues: set[str] = set()

    def queue_name(self, queue: str) -> str:
        return f"{self._ns}.{queue}"

    def _channel(self) -> BlockingChannel:
        ch: BlockingChannel | None = getattr(self._local, "channel", None)
        if ch is None or not ch.is_open:
            self._drop()
            conn = pika.BlockingConnection(self._params)  # a refusal is a broker error: _guard tries again
            try:
                ch = conn.channel()
                # Publishes are transactional rather than confirmed one by one: a batch of messages costs one
                # round trip (tx.commit-ok comes once the broker holds all of them, persisted), and a batch
                # cut short by a dropped connection is rolled back whole rather than half sent.
                ch.tx_select()
            except BaseException:
                _close(conn)
                raise
            self._local.conn, self._local.channel = conn, ch
        return ch

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = self._local.channel = None
        if conn is not None:
            _close(conn)

    def _guard(self, fn: Callable[[BlockingChannel], object]) -> object:
        def attempt() -> object:
            try:
                return fn(self._channel())
            except BROKER_ERRORS:
                self._drop()
                raise

        try:
            return attempt()  # the usual case: no retry machinery on the hot path
        except BROKER_ERRORS:
            pass  # e.g. the cached connection was lost: a new one is opened at once, and once more after a pause
        retrying = retry(
            stop=stop_after_attempt(PUBLISH_ATTEMPTS - 1),
            wait=wait_fixed(0.2),
            retry=retry_if_exception_type(BROKER_ERRORS),
            reraise=True,
        )
        try:
            return retrying(attempt)()
        except BROKER_ERRORS as e:
            raise _unavailable(e) from e

    def setup(self) -> None:
        def declare(ch: BlockingChannel) -> None:
            ch.exchange_declare(self._exchange, exchange_type="topic", durable=True)
            for queue, keys in QUEUES.items():
                ch.queue_declare(self.queue_name(queue), durable=True)
                for key in keys:
                    ch.queue_bind(self.queue_name(queue), self._exchange, routing_key=key)
            ch.queue_bind(self.queue_name("jobs"), self._exchange, routing_key=RETRY_KEY)

        self._guard(declare)

    @staticmethod
    def _message(
        key: str, events: list[EventEnvelope], expiration: str | None = None
    ) -> tuple[bytes, pika.BasicProperties]:
        one = events[0] if key not in ARRAY_KEYS else None
        props = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=str(one.event_id) if one else None,
            correlation_id=one.correlation_id if one else None,
            type=one.event_type.value if one else key,
            expiration=expiration,
        )
        return body(events, key), props

    def publish(self, event: EventEnvelope) -> None:
        self.publish_many([event])

    def publish_many(self, events: Sequence[EventEnvelope]) -> None:
        if not events:
            return
        out = [(key, *self._message(key, batch)) for key, batch in messages(events, self._inline)]

        def send(ch: BlockingChannel) -> None:
            for key, data, props in out:  # every key is bound (see topology.QUEUES)
                ch.basic_publish(self._exchange, key, data, props)
            ch.tx_commit()

        self._guard(send)

    def schedule(self, event: EventEnvelope, delay_s: float) -> None:
        # Rounded up, plus a little: the broker keeps a message's time in whole milliseconds and was seen to let
        # one go ~2 ms before its TTL by this process's clock; a retry must never run before its backoff.
        delay_ms = math.ceil(delay_s * 1000) + EARLY_SLACK_MS
        queue = self.queue_name(f"delay.{int(math.log(delay_ms, DELAY_BUCKET_FACTOR))}")
        data, props = self._message(RETRY_KEY, [event], expiration=str(delay_ms))

        def send(ch: BlockingChannel) -> None:
            if queue not in self._delay_queues:
                ch.queue_declare(
                    queue,
                    durable=True,
                    arguments={
                        "x-dead-letter-exchange": self._exchange,
                        "x-dead-letter-routing-key": RETRY_KEY,
                    },
                )
                self._delay_queues.add(queue)
            ch.basic_publish("", queue, data, props)
            ch.tx_commit()

        self._guard(send)

    def consume(
        self,
        queue: str,
        on_message: Callable[[Delivery], None],
        prefetch: int,
        stop: threading.Event,
        drain_s: float = 0.0,
    ) -> None:
        try:
            conn = pika.BlockingConnection(self._params)
        except BROKER_ERRORS as e:
            raise _unavailable(e) from e
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=prefetch)
            settler = _Settler(conn, ch)

            def deliver(ch: BlockingChannel, method: pika.spec.Basic.Deliver, _props: object, body: bytes) -> None:
                settler.delivered(method.delivery_tag)
                on_message(_PikaDelivery(settler, method.delivery_tag, body, bool(method.redelivered)))

            tag = ch.basic_consume(self.queue_name(queue), deliver)
            while not stop.is_set():
                conn.process_data_events(time_limit=POLL_S)
            ch.basic_cancel(tag)  # no new deliveries; those in hand may still be settled for `drain_s`
            deadline = time.monotonic() + drain_s
            while settler.held > 0 and time.monotonic() < deadline:
                conn.process_data_events(time_limit=POLL_S)
            conn.process_data_events(time_limit=0)  # send acks queued by handler threads before closing
        except AMQPError as e:
            raise BusUnavailable(f"RabbitMQ consumer on {queue!r}: {e!r}") from e
        finally:
            _close(conn)

    def depth(self, queue: str) -> int:
        result = self._guard(lambda ch: ch.queue_declare(self.queue_name(queue), passive=True))
        return int(result.method.message_count)  # type: ignore[attr-defined]

    def consumers(self, queue: str) -> int:
        result = self._guard(lambda ch: ch.queue_declare(self.queue_name(queue), passive=True))
        return int(result.method.consumer_count)  # type: ignore[attr-defined]

    def ping(self) -> None:
        self._guard(lambda ch: ch.connection.process_data_events(time_limit=0))

    def drop(self) -> None:
        """Delete the namespace's exchange and every queue it may have declared, messages included: for
        throwaway namespaces (the tests'), so a shared broker does not collect durable queues forever."""
        names = [self.queue_name(q) for q in QUEUES] + [self.queue_name(f"delay.{i}") for i in range(DELAY_BUCKETS)]

        def delete(ch: BlockingChannel) -> None:
            for name in names:  # deleting a queue that does not exist is a no-op in AMQP 0-9-1
                ch.queue_delete(name)
            ch.exchange_delete(self._exchange)

        self._guard(delete)
        self._delay_queues.clear()

    def close(self) -> None:
        self._drop()
