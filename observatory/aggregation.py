"""Folding events into the event store and the counters: the aggregator's logic, testable without Ray."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from contracts import EventEnvelope
from observatory import unreadable
from observatory.ports import Counters, Delivery, EventStore

# (event_type, duplicate, lag_s): where the aggregator reports each event (metrics)
EventHook = Callable[[str, bool, float], None]
# (reason, message): where an event that cannot be read is kept (the job store's dead letters)
DeadLetterHook = Callable[[str, str], None]

log = logging.getLogger(__name__)


class EventAggregator:
    def __init__(
        self,
        events: EventStore,
        counters: Counters,
        on_event: EventHook | None = None,
        dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self._events, self._counters = events, counters
        self._on_event = on_event if on_event is not None else (lambda *_: None)
        self._dead_letter = dead_letter
        self.stored = 0
        self.duplicates = 0

    def handle(self, delivery: Delivery) -> None:
        self.handle_batch([delivery])

    def handle_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Fold a batch: one event-store write and one counters round trip, then the acks."""
        readable: list[tuple[Delivery, EventEnvelope]] = []
        for delivery in deliveries:
            try:
                readable.append((delivery, EventEnvelope.model_validate_json(delivery.body)))
            except ValidationError as e:
                log.error("unprocessable event rejected: %s", e.errors(include_url=False)[:3])
                if self._dead_letter is not None and unreadable.only_for_aggregators(delivery.body):
                    self._dead_letter(unreadable.reason(e), delivery.body.decode("utf-8", "replace"))
                delivery.reject(requeue=False)
        events = [event for _, event in readable]
        # Both steps are idempotent on event_id, so a redelivery after a crash between them is harmless.
        stored = self._events.append_many(events)
        self._counters.apply_many(events)
        now = datetime.now(UTC)
        for (delivery, event), new in zip(readable, stored, strict=True):
            delivery.ack()
            if new:
                self.stored += 1
            else:
                self.duplicates += 1
            self._on_event(event.event_type.value, not new, (now - event.occurred_at).total_seconds())
