"""The message topology every bus implements: queues and the topic patterns bound to them."""

from __future__ import annotations

# Logical queue -> binding pattern (AMQP topic syntax). `job.created` reaches both the processors and
# the aggregators; every other job event only the aggregators.
QUEUES: dict[str, str] = {"jobs": "job.created", "events": "job.#"}


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
    return [queue for queue, pattern in QUEUES.items() if matches(pattern, key)]
