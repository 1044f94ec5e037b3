"""Folding events into the event store and the counters: the aggregator's logic, testable without Ray."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import TypeAdapter, ValidationError

from contracts import EventEnvelope
from observatory import unreadable
from observatory.ports import Counters, Delivery, EventStore

# (event_type, duplicate, lag_s): where the aggregator reports each event (metrics)
EventHook = Callable[[str, bool, float], None]
# (reason, message): where an event that cannot be read is kept (the job store's dead letters)
DeadLetterHook = Callable[[str, str], None]

log = logging.getLogger(__name__)
_MANY = TypeAdapter(list[EventEnvelope])


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
        """Fold a batch: one event-store write and one counters round trip, then the acks. A message holds one
        event or several (contracts: event_batch); either way it is acked once all of them are folded. What
        cannot be read is dead-lettered only after the fold succeeded, so a batch that is delivered again (the
        fold failed) does not keep it twice."""
        readable: list[tuple[Delivery, list[EventEnvelope]]] = []
        rejected: list[Delivery] = []
        keep: list[tuple[str, str]] = []
        for delivery in deliveries:
            found = self._read(delivery.body, keep)
            if found:
                readable.append((delivery, found))
            else:
                rejected.append(delivery)
        pairs = [(delivery, event) for delivery, found in readable for event in found]
        events = [event for _, event in pairs]
        # Both steps are idempotent on event_id, so a redelivery after a crash between them is harmless.
        stored = self._events.append_many(events)
        self._counters.apply_many(events)
        folded = list(zip(pairs, stored, strict=True))  # an answer missing: nothing is acked, all come again
        for reason, message in keep:
            if self._dead_letter is not None:
                self._dead_letter(reason, message)
        for delivery in rejected:
            delivery.reject(requeue=False)
        for delivery, _ in readable:
            delivery.ack()
        now = datetime.now(UTC)
        for (_, event), new in folded:
            if new:
                self.stored += 1
            else:
                self.duplicates += 1
            self._on_event(event.event_type.value, not new, (now - event.occurred_at).total_seconds())

    def _read(self, body: bytes, keep: list[tuple[str, str]]) -> list[EventEnvelope]:
        """The events of a message (none: it is rejected). What cannot be read goes to `keep`, (reason, message),
        when the aggregators are the ones to keep it: a single event that only they receive, or an element of an
        array on its own (the others folded) unless it names a work event type: that is inline work, which the
        processors receive in an array of their own and keep (observatory.unreadable)."""
        if not body.lstrip().startswith(b"["):
            try:
                return [EventEnvelope.model_validate_json(body)]
            except ValidationError as e:
                self._unreadable(e, body, keep if unreadable.only_for_aggregators(body) else None)
                return []
        try:
            return _MANY.validate_json(body)
        except ValidationError as e:
            try:
                items = json.loads(body)
            except (ValueError, RecursionError):  # not JSON: its routing is unknown, it is left to the processors
                self._unreadable(e, body, None)
                return []
        found = []
        for item in items if isinstance(items, list) else [items]:
            try:
                found.append(EventEnvelope.model_validate(item))
            except ValidationError as e:
                element = json.dumps(item).encode()
                self._unreadable(e, element, None if unreadable.names_work(element) else keep)
        return found

    @staticmethod
    def _unreadable(e: ValidationError, body: bytes, keep: list[tuple[str, str]] | None) -> None:
        log.error("unprocessable event rejected: %s", e.errors(include_url=False)[:3])
        if keep is not None:
            keep.append((unreadable.reason(e), body.decode("utf-8", "replace")))
