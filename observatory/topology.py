"""The message topology every bus implements: queues and the topic patterns bound to them."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from contracts import EventEnvelope

# Logical queue -> binding patterns (AMQP topic syntax). `job.created` and `job.requeued` reach both the
# processors and the aggregators; every other job event only the aggregators. Jobs of inline types (see
# JobType.isolated) have their own queue, so a processor takes them in micro-batches without holding back
# jobs that wait for one of its task slots. Messages of several events (contracts: event_batch) have queues of
# their own too, outside `job.#` and `inline.#` (`batches` for the aggregators, `inline_batches` for the
# processors: several inline jobs' work): a consumer of an older release, still consuming the queues of one
# event during an upgrade, never receives a form it cannot read. Retries reach the jobs queue through the bus's
# delay mechanism (`Bus.schedule`), not through a binding.
INLINE_PREFIX = "inline."
WORK_KEYS = ("job.created", "job.requeued")
BATCH_KEY = "events.batch"
INLINE_BATCH_KEY = "work.inline.batch"  # several inline jobs' work in one message; outside `job.#` and `inline.#`
# Inline jobs per message at most: a large batch request still spreads over the processors (and their nodes).
INLINE_BATCH_MAX = 32
QUEUES: dict[str, tuple[str, ...]] = {
    "jobs": WORK_KEYS,
    "inline": tuple(INLINE_PREFIX + k for k in WORK_KEYS),
    "inline_batches": (INLINE_BATCH_KEY,),
    "events": ("job.#", INLINE_PREFIX + "#"),
    "batches": (BATCH_KEY,),
}
EVENT_QUEUES = ("events", "batches")  # what the aggregators consume
WORK_QUEUES = ("jobs", "inline", "inline_batches")  # what the processors consume
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
    """How one publish goes out, as (routing key, events) per message. The work of jobs of isolated types goes
    one event per message, as a processor takes those one per task slot. The work of two or more jobs of inline
    types goes in messages of several (up to INLINE_BATCH_MAX each, as even as can be) to the processors, which
    run those in micro-batches anyway; their events go to the aggregators with every other event of the publish,
    in one message: the aggregators fold them together (messages per publish, not per job and step: the broker,
    the publisher and the consumers each pay per message). A single event of either kind goes as itself, to the
    queues that take one event."""
    work = [e for e in events if e.event_type.value in WORK_KEYS]
    inline = [e for e in work if e.payload.job_type in inline_types]
    batched = len(inline) > 1
    out = [(routing_key(e, inline_types), [e]) for e in work if not (batched and e.payload.job_type in inline_types)]
    rest = [e for e in events if e.event_type.value not in WORK_KEYS]
    if batched:
        n, k = len(inline), -(-len(inline) // INLINE_BATCH_MAX)  # k messages of over 16 each when k > 1
        out += [(INLINE_BATCH_KEY, inline[i * n // k : (i + 1) * n // k]) for i in range(k)]
        rest = inline + rest
    if len(rest) == 1:
        out.append((routing_key(rest[0], inline_types), rest))
    elif rest:
        out.append((BATCH_KEY, rest))
    return out


def body(events: Sequence[EventEnvelope], memo: dict[int, bytes] | None = None) -> bytes:
    """A message's body: the event itself (contracts: event_envelope), or the array of them (event_batch).
    `memo` (by object) serializes an event that goes in two messages of a publish once."""
    memo = {} if memo is None else memo

    def one(e: EventEnvelope) -> bytes:
        data = memo.get(id(e))
        if data is None:
            data = memo[id(e)] = e.model_dump_json().encode()
        return data

    return one(events[0]) if len(events) == 1 else b"[" + b",".join(map(one, events)) + b"]"
