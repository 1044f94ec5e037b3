"""The message topology every bus implements: queues and the topic patterns bound to them."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from contracts import EventEnvelope

# Logical queue -> binding patterns (AMQP topic syntax). `job.created` and `job.requeued` reach both the
# processors and the aggregators; every other job event only the aggregators. Jobs of inline types (see
# JobType.isolated) have their own queue, so a processor takes them in micro-batches without holding back
# jobs that wait for one of its task slots. Messages of several events (contracts: event_batch) have their own
# queue too, outside `job.#`: an aggregator of an older release, still consuming the events queue during an
# upgrade, never receives a form it cannot read. Retries reach the jobs queue through the bus's delay mechanism
# (`Bus.schedule`), not through a binding.
INLINE_PREFIX = "inline."
WORK_KEYS = ("job.created", "job.requeued")
BATCH_KEY = "events.batch"
QUEUES: dict[str, tuple[str, ...]] = {
    "jobs": WORK_KEYS,
    "inline": tuple(INLINE_PREFIX + k for k in WORK_KEYS),
    "events": ("job.#", INLINE_PREFIX + "#"),
    "batches": (BATCH_KEY,),
}
EVENT_QUEUES = ("events", "batches")  # what the aggregators consume
RETRY_KEY = "work.retry"  # routing key of delayed retries; outside `job.#`, so events never see them


def routing_key(event: EventEnvelope, inline_types: Collection[str]) -> str:
    """The event's type, with a prefix for the work of inline job types (to the inline queue)."""
    key = event.event_type.value
    return INLINE_PREFIX + key if key in WORK_KEYS and event.payload.job_type in inline_types else key


def matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] in ("*", k[0])) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def routes(key: str) -> list[str]:
    return [queue for queue, patterns in QUEUES.items() if any(matches(p, key) for p in patterns)]


def messages(events: Sequence[EventEnvelope], inline_types: Collection[str]) -> list[tuple[str, list[EventEnvelope]]]:
    """How one publish goes out, as (routing key, events) per message: each work event alone, as the processors
    take jobs one at a time, then every other event of the publish in one message for the aggregators, who fold
    them together anyway (one message per publish, not per job and step: the broker, the publisher and the
    aggregator each pay per message). A single other event goes as itself, to the events queue."""
    out = [(routing_key(e, inline_types), [e]) for e in events if e.event_type.value in WORK_KEYS]
    rest = [e for e in events if e.event_type.value not in WORK_KEYS]
    if len(rest) == 1:
        out.append((routing_key(rest[0], inline_types), rest))
    elif rest:
        out.append((BATCH_KEY, rest))
    return out


def body(events: Sequence[EventEnvelope]) -> bytes:
    """A message's body: the event itself (contracts: event_envelope), or the array of them (event_batch)."""
    if len(events) == 1:
        return events[0].model_dump_json().encode()
    return b"[" + b",".join(e.model_dump_json().encode() for e in events) + b"]"
