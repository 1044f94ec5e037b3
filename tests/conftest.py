"""Shared fixtures. Integration tests run against real servers on 127.0.0.1, started by
`scripts/services.sh up` (the README's test command does that). A server that cannot be reached is a
test failure, never a skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# Keep every Ray node these tests start on loopback (read by Ray at import time).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Loopback-only test clusters: no token auth, so the Ray CLIs and drivers need no shared token file.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from observatory import backends
from observatory.settings import Settings

SERVERS = ("AMQP_URL", "POSTGRES_DSN", "MONGO_URL", "REDIS_URL")


@pytest.fixture(scope="session")
def namespace() -> str:
    """A fresh namespace per test session keeps runs apart on shared servers."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def settings(namespace: str) -> Settings:
    missing = [v for v in SERVERS if not os.environ.get(v)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: run `scripts/services.sh up` and "
            '`eval "$(scripts/services.sh env)"`, or use the README\'s test command'
        )
    return Settings(OBSERVATORY_NAMESPACE=namespace)


@pytest.fixture(scope="session")
def real(settings: Settings) -> Iterator[backends.Backends]:
    """The real adapters, set up once; each check fails loudly when its server is down."""
    b = backends.build(settings)
    for name, backend in (("RabbitMQ", b.bus), ("PostgreSQL", b.jobs), ("MongoDB", b.events), ("Redis", b.counters)):
        try:
            backend.ping()
        except Exception as e:  # noqa: BLE001 - any failure here means the server is not usable
            pytest.fail(f"{name} is not reachable: {e}")
    b.setup()
    yield b
    b.close()
