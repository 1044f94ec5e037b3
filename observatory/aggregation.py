"""Folding events into the event store and the counters: the aggregator's logic, testable without Ray."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from contracts import EventEnvelope
from observatory.ports import Counters, Delivery, EventStore

# (event_type, duplicate, lag_s): where the aggregator reports each event (metrics)
EventHook = Callable[[str, bool, float], None]

log = logging.getLogger(__name__)


class EventAggregator:
    def __init__(self, events: EventStore, counters: Counters, on_event: EventHook | None = None) -> None:
        self._events, self._counters = events, counters
        self._on_event = on_event or (lambda *_: None)
        self.stored = 0
        self.duplicates = 0

    def handle(self, delivery: Delivery) -> None:
        try:
            event = EventEnvelope.model_validate_json(delivery.body)
        except ValidationError as e:
            log.error("unprocessable event rejected: %s", e.errors(include_url=False)[:3])
            delivery.reject(requeue=False)
            return
        # Both steps are idempotent on event_id, so a redelivery after a crash between them is harmless.
        stored = self._events.append(event)
        if stored:
            self.stored += 1
        else:
            self.duplicates += 1
        self._counters.apply(event)
        delivery.ack()
        lag = (datetime.now(UTC) - event.occurred_at).total_seconds()
        self._on_event(event.event_type.value, not stored, lag)
