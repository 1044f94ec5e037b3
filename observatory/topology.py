"""The message topology every bus implements: queues and the topic patterns bound to them."""

from __future__ import annotations

# Logical queue -> binding patterns (AMQP topic syntax). `job.created` and `job.requeued` reach both the
# processors and the aggregators; every other job event only the aggregators. Retries reach the jobs
# queue through the bus's delay mechanism (`Bus.schedule`), not through a binding.
QUEUES: dict[str, tuple[str, ...]] = {"jobs": ("job.created", "job.requeued"), "events": ("job.#",)}
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
