"""The message topology every bus implements: queues and the topic patterns bound to them."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from contracts import EventEnvelope

# Logical queue -> binding patterns (AMQP topic syntax). `job.created` and `job.requeued` of isolated job types
# reach both the processors (`jobs`) and the aggregators (`events`); every other job event only the aggregators.
# The work of inline types (see JobType.isolated) goes in arrays (contracts: event_batch) to a queue of its own,
# `inline_batches`, so a processor takes it in micro-batches without holding back jobs that wait for one of its
# task slots; the same messages reach the aggregators on `batches`, ahead of any later event of those jobs (the
# processors publish those only once they have the work), so a job's events are folded in order. Arrays of
# events have queues of their own, outside `job.#` and `inline.#` (`batches` for the aggregators): a consumer
# of an older release, still consuming the queues of one event during an upgrade, never receives a form it
# cannot read. `inline` takes inline work one event per message, as an older release sent it (this one
# consumes it, and sends nothing there). Retries reach the jobs queue through the bus's delay mechanism
# (`Bus.schedule`), not through a binding.
INLINE_PREFIX = "inline."
WORK_KEYS = ("job.created", "job.requeued")
BATCH_KEY = "events.batch"
INLINE_BATCH_KEY = "work.inline.batch"  # several inline jobs' work in one message; outside `job.#` and `inline.#`
# Inline jobs per message at most: a large batch request still spreads over the processors (and their nodes).
INLINE_BATCH_MAX = 32
ARRAY_KEYS = (BATCH_KEY, INLINE_BATCH_KEY)  # whose messages are arrays of events (contracts: event_batch)
QUEUES: dict[str, tuple[str, ...]] = {
    "jobs": WORK_KEYS,
    "inline": tuple(INLINE_PREFIX + k for k in WORK_KEYS),
    "inline_batches": (INLINE_BATCH_KEY,),
    "events": ("job.#", INLINE_PREFIX + "#"),
    "batches": (BATCH_KEY, INLINE_BATCH_KEY),
}
EVENT_QUEUES = ("events", "batches")  # what the aggregators consume
WORK_QUEUES = ("jobs", "inline", "inline_batches")  # what the processors consume
RETRY_KEY = "work.retry"  # routing key of delayed retries; outside `job.#`, so events never see them


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
    """How one publish goes out, as (routing key, events) per message. The work of a job of an isolated type goes
    alone, under its event's type (to `jobs` and `events`), as a processor takes those one per task slot. The work
    of jobs of inline types goes in arrays of up to INLINE_BATCH_MAX, as even as can be, to `inline_batches` and
    `batches`: the processors run those in micro-batches anyway, and the aggregators get them in the order the
    processors do (folding a large publish's work in one message would let the processors' later events of those
    jobs overtake it). Every other event of the publish goes in one array to `batches`, as the aggregators fold
    them together (messages per publish, not per job and step: the broker, the publisher and the consumers each
    pay per message); a single event alone goes as itself to `events`."""
    work = [e for e in events if e.event_type.value in WORK_KEYS]
    inline = [e for e in work if e.payload.job_type in inline_types]
    out = [(e.event_type.value, [e]) for e in work if e.payload.job_type not in inline_types]
    rest = [e for e in events if e.event_type.value not in WORK_KEYS]
    if inline:
        n, k = len(inline), -(-len(inline) // INLINE_BATCH_MAX)  # k messages of over 16 each when k > 1
        out += [(INLINE_BATCH_KEY, inline[i * n // k : (i + 1) * n // k]) for i in range(k)]
    if len(rest) == 1:
        out.append((rest[0].event_type.value, rest))
    elif rest:
        out.append((BATCH_KEY, rest))
    return out


def body(events: Sequence[EventEnvelope], key: str = "") -> bytes:
    """A message's body: the event itself (contracts: event_envelope), or for the keys of several (even of one)
    the array of them (event_batch)."""
    if key in ARRAY_KEYS:
        return b"[" + b",".join(e.model_dump_json().encode() for e in events) + b"]"
    [event] = events
    return event.model_dump_json().encode()
