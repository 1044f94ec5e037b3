"""How the RabbitMQ consumer turns handler threads' acks into frames (pure logic: a recording channel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from observatory.adapters.rabbitmq import _Settler


class Loop:
    """Stands in for the pika connection: callbacks wait until the test runs them, as on the IO thread."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def add_callback_threadsafe(self, fn: Callable[[], None]) -> None:
        self.callbacks.append(fn)

    def run(self) -> None:
        while self.callbacks:
            self.callbacks.pop(0)()


class Channel:
    def __init__(self) -> None:
        self.frames: list[tuple[Any, ...]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.frames.append(("ack", tag, multiple))

    def basic_reject(self, tag: int, requeue: bool) -> None:
        self.frames.append(("reject", tag, requeue))


def _settler(tags: range) -> tuple[_Settler, Loop, Channel]:
    loop, ch = Loop(), Channel()
    s = _Settler(loop, ch)  # type: ignore[arg-type]
    for tag in tags:
        s.delivered(tag)
    return s, loop, ch


def test_a_settled_batch_is_one_multiple_ack() -> None:
    s, loop, ch = _settler(range(1, 65))
    for tag in range(1, 65):
        s.ack(tag)
    assert s.held == 0 and len(loop.callbacks) == 1  # one wake-up of the connection thread, not 64
    loop.run()
    assert ch.frames == [("ack", 64, True)]


def test_a_multiple_ack_never_covers_an_unsettled_delivery() -> None:
    s, loop, ch = _settler(range(1, 7))
    for tag in (1, 2, 4, 5):
        s.ack(tag)
    loop.run()
    assert ch.frames == [("ack", 2, True), ("ack", 4, False), ("ack", 5, False)]
    assert s.held == 2
    s.ack(3)
    s.ack(6)
    loop.run()
    assert ch.frames[3:] == [("ack", 6, True)]  # 3 and 6 left; 4 and 5 were already acked
    assert s.held == 0


def test_a_rejected_delivery_ends_the_prefix_only_until_it_is_rejected() -> None:
    s, loop, ch = _settler(range(1, 5))
    s.reject(2, requeue=True)
    loop.run()
    for tag in (1, 3, 4):
        s.ack(tag)
    loop.run()
    assert ch.frames == [("reject", 2, True), ("ack", 4, True)]
    assert s.held == 0


def test_acks_arriving_while_a_flush_is_due_ride_along() -> None:
    s, loop, ch = _settler(range(1, 4))
    s.ack(1)
    s.ack(2)
    assert len(loop.callbacks) == 1
    loop.run()
    s.ack(3)
    assert len(loop.callbacks) == 1  # a new flush once the previous one ran
    loop.run()
    assert ch.frames == [("ack", 2, True), ("ack", 3, True)]


def test_held_drops_only_once_the_ack_is_queued() -> None:
    s, loop, ch = _settler(range(1, 3))
    seen: list[int] = []
    real_call = loop.add_callback_threadsafe

    def queue_and_look(fn: Callable[[], None]) -> None:
        real_call(fn)
        seen.append(s.held)  # a draining consumer looking now must still wait for this ack

    loop.add_callback_threadsafe = queue_and_look  # type: ignore[method-assign]
    s.ack(1)
    assert seen == [2] and s.held == 1
    loop.run()
    assert ch.frames == [("ack", 1, True)]
