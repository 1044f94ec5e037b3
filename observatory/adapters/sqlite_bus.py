"""The embedded message bus: a durable queue in one SQLite file with leases.

Why not persist-queue's SQLiteAckQueue: it hands out messages under a per-process lock and resumes
*all* unacked messages at once, so two processes can take the same message, and a dead consumer's
messages can only come back by also stealing those of live consumers. Here a consumer claims messages
with a lease in one `BEGIN IMMEDIATE` transaction, renews the lease while it lives, and gives unacked
messages back when it stops; when its process dies the lease runs out and the messages are redelivered
(`redelivered` is true), which is what RabbitMQ does when a consumer's connection drops.

Acks and rejects are not a transaction each: like RabbitMQ's, they are queued and the consumer's own thread
settles whatever has collected in one transaction before it next claims, so a micro-batch of acks costs one
write, and the writers of the file (publishers, consumers) wait on each other less. Until then a message
stays leased to its consumer (and its lease renewed); a consumer that dies first has it redelivered.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from contracts import EventEnvelope
from observatory.adapters.sqlite_base import SQLiteFile, marks, now_us
from observatory.errors import BusUnavailable
from observatory.ports import Delivery
from observatory.topology import QUEUES, body, messages, routes

LEASE_S = 15.0  # a consumer that stops renewing (its process died) loses its messages after this long
POLL_MIN_S, POLL_MAX_S = 0.02, 0.25  # idle consumers back off between these
STOP_CHECK_S = 0.02  # how soon a napping consumer notices its stop flag


_READY = "queue = ? AND available_us <= ? AND (lease_owner IS NULL OR lease_until_us < ?)"


def _settle_in(conn: sqlite3.Connection, settled: Sequence[tuple[int, bool]], owner: str) -> None:
    """Acks (deleted) and rejects (requeued: unleased), in the caller's transaction. A lease that ran out and
    moved on to another consumer is not ours to settle."""
    acked = [msg_id for msg_id, requeue in settled if not requeue]
    requeued = [msg_id for msg_id, requeue in settled if requeue]
    ours = "lease_owner = ? AND id IN (SELECT value FROM json_each(?))"
    if acked:
        conn.execute(f"DELETE FROM messages WHERE {ours}", (owner, json.dumps(acked)))
    if requeued:
        conn.execute(
            f"UPDATE messages SET lease_owner = NULL, lease_until_us = NULL WHERE {ours}", (owner, json.dumps(requeued))
        )


def _nap(seconds: float, wake: threading.Event, stop: threading.Event) -> bool:
    """Wait up to `seconds` for `wake`, ending early (False) once `stop` is set; whether `wake` came."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if wake.wait(min(left, STOP_CHECK_S)):
            return True
    return False


class _SQLiteDelivery:
    def __init__(self, msg_id: int, body: bytes, redelivered: bool, settle: Callable[[int, bool], None]) -> None:
        self.body, self.redelivered = body, redelivered
        self._id, self._settle = msg_id, settle

    def ack(self) -> None:
        self.reject(requeue=False)

    def reject(self, requeue: bool) -> None:
        self._settle(self._id, requeue)


class SQLiteBus:
    def __init__(self, path: Path, lease_s: float = LEASE_S, inline_types: Collection[str] = ()) -> None:
        self._db = SQLiteFile(path, "sqlite_bus", BusUnavailable)
        self._inline = frozenset(inline_types)
        self._lease_us = int(lease_s * 1_000_000)

    def setup(self) -> None:
        self._db.setup()

    def _enqueue(self, out: Sequence[tuple[str, bytes]], delay_s: float = 0.0) -> None:
        available = now_us() + int(delay_s * 1_000_000)
        with self._db.write() as conn:  # committed == confirmed; one transaction for the whole batch
            conn.executemany(
                "INSERT INTO messages (queue, body, available_us) VALUES (?, ?, ?)",
                [(q, data, available) for q, data in out],
            )

    def publish(self, event: EventEnvelope) -> None:
        self.publish_many([event])

    def publish_many(self, events: Sequence[EventEnvelope]) -> None:
        out = [(body(batch, key), routes(key)) for key, batch in messages(events, self._inline)]
        self._enqueue([(q, data) for data, queues in out for q in queues])

    def schedule(self, event: EventEnvelope, delay_s: float) -> None:
        self._enqueue([("jobs", body([event]))], delay_s)

    def _claim(self, queue: str, owner: str, n: int) -> list[tuple[int, bytes, int]]:
        now = now_us()
        with self._db.read() as conn:  # a cheap look first: most polls of an idle queue find nothing
            if conn.execute(f"SELECT 1 FROM messages WHERE {_READY} LIMIT 1", (queue, now, now)).fetchone() is None:
                return []
        with self._db.write() as conn:
            rows = conn.execute(
                "UPDATE messages SET lease_owner = ?, lease_until_us = ?, deliveries = deliveries + 1 "
                f"WHERE id IN (SELECT id FROM messages WHERE {_READY} ORDER BY id LIMIT ?) "
                "RETURNING id, body, deliveries",
                (owner, now + self._lease_us, queue, now, now, n),
            ).fetchall()
        return sorted((r["id"], r["body"], r["deliveries"]) for r in rows)

    def _settle_many(self, settled: Sequence[tuple[int, bool]], owner: str) -> None:
        with self._db.write() as conn:
            _settle_in(conn, settled, owner)

    def _heartbeat(self, queue: str, owner: str, ids: list[int]) -> None:
        """Renew the leases of the messages still in flight, and say this consumer is alive."""
        with self._db.write() as conn:
            if ids:
                conn.execute(
                    f"UPDATE messages SET lease_until_us = ? WHERE lease_owner = ? AND id IN ({marks(ids)})",
                    (now_us() + self._lease_us, owner, *ids),
                )
            conn.execute(
                "INSERT INTO consumers VALUES (?, ?, ?) ON CONFLICT (owner) DO UPDATE SET seen_us = excluded.seen_us",
                (owner, queue, now_us()),
            )

    def _release(self, owner: str, settled: Callable[[], Sequence[tuple[int, bool]]]) -> None:
        """The consumer is gone: what its handlers settled until now (taken inside the transaction, so none
        is left out) is settled, every other message it held goes back to the queue."""
        with self._db.write() as conn:
            _settle_in(conn, settled(), owner)
            conn.execute("DELETE FROM consumers WHERE owner = ?", (owner,))
            conn.execute(
                "UPDATE messages SET lease_owner = NULL, lease_until_us = NULL WHERE lease_owner = ?", (owner,)
            )

    def consume(
        self,
        queue: str,
        on_message: Callable[[Delivery], None],
        prefetch: int,
        stop: threading.Event,
        drain_s: float = 0.0,
    ) -> None:
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        in_flight: set[int] = set()  # claimed and not yet settled in the file
        settled: list[tuple[int, bool]] = []  # acked or rejected by a handler, waiting for the next flush
        lock = threading.Lock()
        wake = threading.Event()  # a settle arrived: flush it without waiting out the poll

        def settle(msg_id: int, requeue: bool) -> None:
            with lock:
                settled.append((msg_id, requeue))
            wake.set()

        def taken() -> list[tuple[int, bool]]:
            with lock:
                batch = list(settled)
                settled.clear()
            return batch

        def flush() -> None:
            batch = taken()
            if not batch:
                return
            try:
                self._settle_many(batch, owner)
            except BusUnavailable:
                with lock:
                    settled[:0] = batch  # still leased (and renewed): tried again, or settled on release
                raise
            with lock:
                in_flight.difference_update(msg_id for msg_id, _ in batch)

        def until_renewal_s() -> float:
            return max(0.0, (self._lease_us // 3 - (now_us() - renewed)) / 1_000_000)

        poll, renewed = POLL_MIN_S, now_us()
        self._heartbeat(queue, owner, [])
        try:
            while not stop.is_set():
                wake.clear()
                flush()
                if stop.is_set():
                    break
                with lock:
                    free = prefetch - len(in_flight)
                claimed = self._claim(queue, owner, free) if free > 0 else []
                for msg_id, body, deliveries in claimed:
                    with lock:
                        in_flight.add(msg_id)
                    on_message(_SQLiteDelivery(msg_id, body, deliveries > 1, settle))
                if now_us() - renewed > self._lease_us // 3:
                    with lock:
                        ids = sorted(in_flight)
                    self._heartbeat(queue, owner, ids)
                    renewed = now_us()
                if claimed:
                    poll = POLL_MIN_S
                # A wake-up to flush settles is not an idle poll (no back-off); a nap never delays a renewal.
                elif not _nap(min(poll, until_renewal_s()), wake, stop):
                    poll = min(poll * 2, POLL_MAX_S)
            deadline = time.monotonic() + drain_s  # no more claims; keep the leases of those in hand
            while time.monotonic() < deadline:
                wake.clear()
                flush()
                with lock:
                    ids = sorted(in_flight)
                if not ids:
                    break
                if now_us() - renewed > self._lease_us // 3:
                    self._heartbeat(queue, owner, ids)
                    renewed = now_us()
                wake.wait(min(POLL_MIN_S, until_renewal_s()))
        finally:
            self._release(owner, taken)  # like a closed AMQP channel: unsettled messages go back to the queue

    def depth(self, queue: str) -> int:
        """Messages ready for delivery, as RabbitMQ counts them: not those leased or not yet due."""
        if queue not in QUEUES:
            raise BusUnavailable(f"no queue {queue!r}")
        now = now_us()
        with self._db.read() as conn:
            return int(conn.execute(f"SELECT count(*) FROM messages WHERE {_READY}", (queue, now, now)).fetchone()[0])

    def consumers(self, queue: str) -> int:
        """Consumers whose heartbeat is younger than a lease (a dead one stops counting after that)."""
        with self._db.read() as conn:
            return int(
                conn.execute(
                    "SELECT count(*) FROM consumers WHERE queue = ? AND seen_us > ?", (queue, now_us() - self._lease_us)
                ).fetchone()[0]
            )

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()
