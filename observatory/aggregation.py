"""Folding events into the event store and the counters: the aggregator's logic, testable without Ray."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from contracts import EventEnvelope
from observatory.ports import Counters, Delivery, EventStore

log = logging.getLogger(__name__)


class EventAggregator:
    def __init__(self, events: EventStore, counters: Counters) -> None:
        self._events, self._counters = events, counters
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
        if self._events.append(event):
            self.stored += 1
        else:
            self.duplicates += 1
        self._counters.apply(event)
        delivery.ack()
