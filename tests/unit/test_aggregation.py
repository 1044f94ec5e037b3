"""EventAggregator.handle, against the real embedded event store and counters."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from contracts import EventEnvelope, EventType, JobStatus
from observatory.aggregation import EventAggregator
from observatory.topology import BATCH_KEY, body
from tests.unit.fakes import FakeDelivery, Logged, job_event


def created_event(age_s: float = 0.0) -> EventEnvelope:
    occurred_at = datetime.now(UTC) - timedelta(seconds=age_s)
    return job_event(uuid.uuid4(), 0, JobStatus.PENDING, EventType.JOB_CREATED, occurred_at)


def delivery_of(event: EventEnvelope, calls: list[str] | None = None) -> FakeDelivery:
    return FakeDelivery(event.model_dump_json().encode(), calls=calls)


class HookCalls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, float]] = []

    def __call__(self, event_type: str, duplicate: bool, lag_s: float) -> None:
        self.calls.append((event_type, duplicate, lag_s))


def test_new_event_is_stored_counted_and_acked(events, counters):
    agg = EventAggregator(events, counters)
    event = created_event()
    delivery = delivery_of(event)

    agg.handle(delivery)

    assert (agg.stored, agg.duplicates) == (1, 0)
    assert events.for_job(event.payload.job_id) == [event]
    assert counters.stats().pending == 1
    assert delivery.acked and delivery.rejected is None


def test_duplicate_event_is_counted_as_duplicate_and_acked(events, counters):
    agg = EventAggregator(events, counters)
    event = created_event()
    agg.handle(delivery_of(event))
    again = delivery_of(event)

    agg.handle(again)

    assert (agg.stored, agg.duplicates) == (1, 1)
    assert counters.stats().total_jobs == 1
    assert again.acked


def test_stored_and_duplicate_events_are_counted_one_by_one(events, counters):
    agg = EventAggregator(events, counters)
    a, b = created_event(), created_event()

    for event in (a, b, a, b):
        agg.handle(delivery_of(event))

    assert (agg.stored, agg.duplicates) == (2, 2)


def test_hook_sees_the_event_type_and_that_it_is_new(events, counters):
    hook = HookCalls()

    EventAggregator(events, counters, hook).handle(delivery_of(created_event()))

    [(event_type, duplicate, _)] = hook.calls
    assert (event_type, duplicate) == ("job.created", False)


def test_hook_sees_a_duplicate(events, counters):
    hook = HookCalls()
    agg = EventAggregator(events, counters, hook)
    event = created_event()
    agg.handle(delivery_of(event))

    agg.handle(delivery_of(event))

    assert [d for _, d, _ in hook.calls] == [False, True]


def test_hook_sees_how_late_the_event_arrived(events, counters):
    hook = HookCalls()

    EventAggregator(events, counters, hook).handle(delivery_of(created_event(age_s=5)))

    [(_, _, lag)] = hook.calls
    assert 5 <= lag < 10


def test_hook_sees_a_fresh_event_with_a_small_non_negative_lag(events, counters):
    hook = HookCalls()

    EventAggregator(events, counters, hook).handle(delivery_of(created_event()))

    [(_, _, lag)] = hook.calls
    assert 0 <= lag < 5


def test_unprocessable_body_is_rejected_without_requeue(events, counters):
    hook = HookCalls()
    agg = EventAggregator(events, counters, hook)
    delivery = FakeDelivery(b'{"event_type": "job.created"}')

    agg.handle(delivery)

    assert delivery.rejected is False and not delivery.acked
    assert (agg.stored, agg.duplicates) == (0, 0)
    assert counters.stats() is None
    assert hook.calls == []


def _from_another_major(event_type: EventType) -> bytes:
    data = json.loads(created_event().model_dump_json()) | {"contract_version": "2.0", "event_type": event_type}
    return json.dumps(data).encode()


def test_an_unreadable_event_only_the_aggregators_get_is_dead_lettered_with_the_reason(events, counters):
    kept: list[tuple[str, str]] = []
    body = _from_another_major(EventType.JOB_COMPLETED)
    delivery = FakeDelivery(body)

    EventAggregator(events, counters, dead_letter=lambda *d: kept.append(d)).handle(delivery)

    assert delivery.rejected is False and not delivery.acked
    [(reason, message)] = kept
    assert reason.startswith("unreadable message") and "unknown major version" in reason
    assert message == body.decode()


@pytest.mark.parametrize(
    "body",
    [_from_another_major(EventType.JOB_CREATED), _from_another_major(EventType.JOB_REQUEUED), b"not json", b"[1"],
    ids=["job.created", "job.requeued", "not-json", "not-json-array"],
)
def test_work_events_and_bodies_of_unknown_routing_are_left_to_the_processors(events, counters, body):
    kept: list[tuple[str, str]] = []
    delivery = FakeDelivery(body)

    EventAggregator(events, counters, dead_letter=lambda *d: kept.append(d)).handle(delivery)

    assert delivery.rejected is False and kept == []  # the processors keep these once, not twice


def test_unprocessable_body_is_logged_with_its_first_three_errors(events, counters, caplog):
    with pytest.raises(ValidationError) as e:
        EventEnvelope.model_validate_json(b"{}")  # six required fields are missing

    with caplog.at_level(logging.ERROR, logger="observatory.aggregation"):
        EventAggregator(events, counters).handle(FakeDelivery(b"{}"))

    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("observatory.aggregation", f"unprocessable event rejected: {e.value.errors(include_url=False)[:3]}")
    ]


def test_ack_comes_after_the_event_is_stored_and_counted(events, counters):
    calls: list[str] = []
    agg = EventAggregator(Logged(events, calls, ("append_many",)), Logged(counters, calls, ("apply_many",)))

    agg.handle(delivery_of(created_event(), calls))

    assert calls == ["append_many", "apply_many", "ack"]


def test_duplicate_is_still_applied_to_the_counters_before_the_ack(events, counters):
    # A crash between append and apply leaves an event stored but not counted; its redelivery must count it.
    event = created_event()
    events.append(event)
    agg = EventAggregator(events, counters)

    agg.handle(delivery_of(event))

    assert counters.stats().pending == 1


def test_event_store_answering_fewer_events_than_asked_fails_the_batch(events, counters):
    class ShortAnswers:
        def __getattr__(self, name):
            return getattr(events, name)

        def append_many(self, batch):
            return events.append_many(batch)[:-1]

    deliveries = [delivery_of(created_event()), delivery_of(created_event())]

    with pytest.raises(ValueError, match="zip"):
        EventAggregator(ShortAnswers(), counters).handle_batch(deliveries)

    assert not deliveries[-1].acked  # the event without an answer is redelivered


def _lifecycle_of(job_id: uuid.UUID) -> list[EventEnvelope]:
    now = datetime.now(UTC)
    steps = [
        (EventType.JOB_CREATED, JobStatus.PENDING),
        (EventType.JOB_STARTED, JobStatus.RUNNING),
        (EventType.JOB_COMPLETED, JobStatus.COMPLETED),
    ]
    return [job_event(job_id, v, st, et, now) for v, (et, st) in enumerate(steps)]


def test_a_message_of_several_events_is_folded_whole_and_acked_once(events, counters):
    jobs = [uuid.uuid4() for _ in range(3)]
    lives = [_lifecycle_of(j) for j in jobs]
    created = [delivery_of(life[0]) for life in lives]
    batch = FakeDelivery(body([e for life in lives for e in life[1:]], BATCH_KEY))
    agg = EventAggregator(events, counters)

    agg.handle_batch([*created, batch])

    assert (agg.stored, agg.duplicates) == (9, 0)
    assert [events.for_job(j) for j in jobs] == lives
    assert (counters.stats().completed, counters.stats().total_jobs) == (3, 3)
    assert batch.acked and batch.rejected is None


def test_a_message_of_several_events_delivered_again_is_counted_once(events, counters):
    life = _lifecycle_of(uuid.uuid4())
    agg = EventAggregator(events, counters)
    agg.handle_batch([delivery_of(life[0]), FakeDelivery(body(life[1:], BATCH_KEY))])
    again = FakeDelivery(body(life[1:], BATCH_KEY))

    agg.handle(again)

    assert (agg.stored, agg.duplicates) == (3, 2)
    assert (counters.stats().completed, counters.stats().running) == (1, 0)
    assert again.acked


def test_an_unreadable_event_in_a_message_of_several_is_dead_lettered_alone(events, counters):
    kept: list[tuple[str, str]] = []
    life = _lifecycle_of(uuid.uuid4())
    bad = json.loads(_from_another_major(EventType.JOB_FAILED))
    message = FakeDelivery(b"[" + b",".join([life[1].model_dump_json().encode(), json.dumps(bad).encode()]) + b"]")
    agg = EventAggregator(events, counters, dead_letter=lambda *d: kept.append(d))

    agg.handle_batch([delivery_of(life[0]), message])

    assert events.for_job(life[0].payload.job_id) == life[:2]
    [(reason, stored)] = kept
    assert "unknown major version" in reason and json.loads(stored) == bad
    assert message.acked and message.rejected is None


def test_an_unreadable_element_of_inline_work_is_left_to_the_processors(events, counters):
    """Inline work reaches the processors in arrays of their own, and the aggregators a copy: kept once, by them."""
    kept: list[tuple[str, str]] = []
    life = _lifecycle_of(uuid.uuid4())
    message = FakeDelivery(
        b"[" + life[1].model_dump_json().encode() + b"," + _from_another_major(EventType.JOB_CREATED) + b"]"
    )

    EventAggregator(events, counters, dead_letter=lambda *d: kept.append(d)).handle(message)

    assert events.for_job(life[1].payload.job_id) == [life[1]]
    assert kept == [] and message.acked


def test_a_message_nested_past_the_parsers_depth_is_rejected_not_raised(events, counters):
    kept: list[tuple[str, str]] = []
    for raw in (b'{"event_type": ' + b"[" * 100_000, b"[" * 100_000):
        delivery = FakeDelivery(raw)
        EventAggregator(events, counters, dead_letter=lambda *d: kept.append(d)).handle(delivery)
        assert delivery.rejected is False and not delivery.acked
    assert kept == []  # which consumer gets it is unknown: left to the processors, as any body with no event type


def test_an_array_of_nothing_readable_is_rejected_and_each_element_kept_once(events, counters):
    """An element that names no work event type reaches only the aggregators: they keep what is bad."""
    kept: list[tuple[str, str]] = []
    delivery = FakeDelivery(b"[1]")

    EventAggregator(events, counters, dead_letter=lambda *d: kept.append(d)).handle(delivery)

    assert delivery.rejected is False and not delivery.acked
    [(reason, message)] = kept
    assert reason.startswith("unreadable message") and message == "1"


def test_a_batch_whose_fold_failed_keeps_its_unreadable_element_once_when_delivered_again(events, counters):
    class FailsOnce:
        def __init__(self) -> None:
            self.failed = False

        def __getattr__(self, name):
            return getattr(events, name)

        def append_many(self, batch):
            if not self.failed:
                self.failed = True
                raise RuntimeError("event store down")
            return events.append_many(batch)

    kept: list[tuple[str, str]] = []
    life = _lifecycle_of(uuid.uuid4())
    body = b"[" + life[1].model_dump_json().encode() + b"," + _from_another_major(EventType.JOB_FAILED) + b"]"
    agg = EventAggregator(FailsOnce(), counters, dead_letter=lambda *d: kept.append(d))
    first, again = FakeDelivery(body), FakeDelivery(body)

    with pytest.raises(RuntimeError):
        agg.handle(first)
    agg.handle(again)

    assert not first.acked and first.rejected is None and again.acked
    assert len(kept) == 1
