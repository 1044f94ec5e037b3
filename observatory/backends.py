"""Selects and builds the backends from the settings: the one place that knows every adapter."""

from __future__ import annotations

from dataclasses import dataclass

from observatory.errors import ConfigurationError
from observatory.ports import Bus, Counters, EventStore, JobStore
from observatory.settings import Settings


@dataclass
class Backends:
    bus: Bus
    jobs: JobStore
    events: EventStore
    counters: Counters

    def setup(self) -> None:
        """Create tables, indexes, exchanges and queues (idempotent)."""
        self.jobs.setup()
        self.events.setup()
        self.bus.setup()

    def close(self) -> None:
        for backend in (self.bus, self.jobs, self.events, self.counters):
            backend.close()


def describe(settings: Settings) -> dict[str, str]:
    """Which implementation each backend uses, for start-up messages and health pages."""
    return {
        "bus": "rabbitmq" if settings.amqp_url else "unset",
        "jobs": "postgresql" if settings.postgres_dsn else "unset",
        "events": "mongodb" if settings.mongo_url else "unset",
        "counters": "redis" if settings.redis_url else "unset",
    }


def build(settings: Settings, pool_size: int = 10) -> Backends:
    missing = [
        name
        for name, value in (
            ("AMQP_URL", settings.amqp_url),
            ("POSTGRES_DSN", settings.postgres_dsn),
            ("MONGO_URL", settings.mongo_url),
            ("REDIS_URL", settings.redis_url),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(
            f'{", ".join(missing)} not set: run `eval "$(scripts/services.sh env)"` after `scripts/services.sh up`'
        )
    from observatory.adapters.mongo import MongoEventStore
    from observatory.adapters.postgres import PostgresJobStore
    from observatory.adapters.rabbitmq import RabbitBus
    from observatory.adapters.redis import RedisCounters

    ns = settings.namespace
    assert settings.amqp_url and settings.postgres_dsn and settings.mongo_url and settings.redis_url
    return Backends(
        bus=RabbitBus(settings.amqp_url, ns),
        jobs=PostgresJobStore(settings.postgres_dsn, ns, max_size=pool_size),
        events=MongoEventStore(settings.mongo_url, ns),
        counters=RedisCounters(settings.redis_url, ns),
    )
