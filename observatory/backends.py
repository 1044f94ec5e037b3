"""Selects and builds the backends from the settings: the one place that knows every adapter.

Each backend is chosen on its own: its URL set -> the real server; unset -> the embedded adapter,
which keeps its data in a SQLite file under OBSERVATORY_DATA_DIR/<namespace>/.
"""

from __future__ import annotations

from dataclasses import dataclass

from observatory.errors import BackendUnavailable
from observatory.jobs import default_registry
from observatory.ports import Bus, Counters, EventStore, JobStore, KeyStore
from observatory.settings import Settings


@dataclass(frozen=True)
class Embedded:
    """One embedded backend's file, the setting that replaces it with a real server, and how to back that up."""

    file: str
    server: str  # the Settings field (and its variable) that selects the real server
    variable: str
    instead: str


# Every file of the embedded data dir, in the order backups take their write locks.
EMBEDDED_FILES = (
    Embedded("bus.sqlite3", "amqp_url", "AMQP_URL", "RabbitMQ's definitions export"),
    Embedded("jobs.sqlite3", "postgres_dsn", "POSTGRES_DSN", "pg_dump"),
    Embedded("events.sqlite3", "mongo_url", "MONGO_URL", "mongodump"),
    Embedded("counters.sqlite3", "redis_url", "REDIS_URL", "Redis persistence (RDB/AOF), or `observatory replay`"),
    Embedded("keys.sqlite3", "postgres_dsn", "POSTGRES_DSN", "pg_dump"),
)


def embedded_files(settings: Settings) -> list[Embedded]:
    """The embedded files the settings use: those whose real server is not configured."""
    return [f for f in EMBEDDED_FILES if not getattr(settings, f.server)]


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
        self.counters.setup()
        self.bus.setup()

    def down(self) -> list[str]:
        """Names of the backends that do not answer a ping right now."""
        down = []
        for name, backend in (
            ("bus", self.bus),
            ("jobs", self.jobs),
            ("events", self.events),
            ("counters", self.counters),
        ):
            try:
                backend.ping()
            except BackendUnavailable:
                down.append(name)
        return down

    def close(self) -> None:
        for backend in (self.bus, self.jobs, self.events, self.counters):
            backend.close()


def describe(settings: Settings) -> dict[str, str]:
    """Which implementation each backend uses, for start-up messages and health pages."""
    where = f"embedded ({settings.embedded_dir})"
    return {
        "bus": "rabbitmq" if settings.amqp_url else where,
        "jobs": "postgresql" if settings.postgres_dsn else where,
        "events": "mongodb" if settings.mongo_url else where,
        "counters": "redis" if settings.redis_url else where,
    }


def _bus(settings: Settings) -> Bus:
    inline = [t.name for t in default_registry() if not t.isolated]  # their work goes to the inline queue
    if settings.amqp_url:
        from observatory.adapters.rabbitmq import RabbitBus

        return RabbitBus(settings.amqp_url, settings.namespace, inline)
    from observatory.adapters.sqlite_bus import SQLiteBus

    return SQLiteBus(settings.embedded_dir / "bus.sqlite3", inline_types=inline)


def _jobs(settings: Settings, pool_size: int) -> JobStore:
    if settings.postgres_dsn:
        from observatory.adapters.postgres import PostgresJobStore

        return PostgresJobStore(settings.postgres_dsn, settings.namespace, max_size=pool_size)
    from observatory.adapters.sqlite_jobs import SQLiteJobStore

    return SQLiteJobStore(settings.embedded_dir / "jobs.sqlite3")


def _events(settings: Settings) -> EventStore:
    if settings.mongo_url:
        from observatory.adapters.mongo import MongoEventStore

        return MongoEventStore(settings.mongo_url, settings.namespace)
    from observatory.adapters.sqlite_events import SQLiteEventStore

    return SQLiteEventStore(settings.embedded_dir / "events.sqlite3")


def _counters(settings: Settings) -> Counters:
    if settings.redis_url:
        from observatory.adapters.redis import RedisCounters

        return RedisCounters(settings.redis_url, settings.namespace, settings.final_state_ttl_s)
    from observatory.adapters.sqlite_counters import SQLiteCounters

    return SQLiteCounters(settings.embedded_dir / "counters.sqlite3", settings.final_state_ttl_s)


def build(settings: Settings, pool_size: int = 10) -> Backends:
    return Backends(
        bus=_bus(settings), jobs=_jobs(settings, pool_size), events=_events(settings), counters=_counters(settings)
    )


def key_store(settings: Settings) -> KeyStore:
    """Where API keys live: with the jobs (PostgreSQL when POSTGRES_DSN is set, else embedded)."""
    if settings.postgres_dsn:
        from observatory.adapters.postgres_keys import PostgresKeyStore

        return PostgresKeyStore(settings.postgres_dsn, settings.namespace)
    from observatory.adapters.sqlite_keys import SQLiteKeyStore

    return SQLiteKeyStore(settings.embedded_dir / "keys.sqlite3")
