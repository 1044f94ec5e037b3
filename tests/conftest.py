"""Shared fixtures. Integration tests run against real servers on 127.0.0.1, started by
`scripts/services.sh up` (the README's test command does that). A server that cannot be reached is a
test failure, never a skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

# Keep every Ray node these tests start on loopback (read by Ray at import time).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Loopback-only test clusters: no token auth, so the Ray CLIs and drivers need no shared token file.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from benchmarks import cleanup
from observatory import backends
from observatory.settings import Settings
from tests.cluster import serve_cluster
from tests.helpers import CONNECTIONS, FAST_RETRIES, SCRATCH_NAMESPACES, assert_backends, scratch

SERVERS = ("AMQP_URL", "POSTGRES_DSN", "MONGO_URL", "REDIS_URL")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        action="store_true",
        help="the browser tests also refresh README's pictures, docs/web-*.png (a plain run leaves the tree as it is)",
    )


@pytest.fixture(scope="session")
def namespace() -> str:
    """A fresh namespace per test session keeps runs apart on shared servers."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def settings(namespace: str) -> Iterator[Settings]:
    """The real servers' settings. When the session ends, what every namespace it used left on the servers is
    dropped: a broker that collects durable queues run after run needs a file handle per queue to start."""
    missing = [v for v in SERVERS if not os.environ.get(v)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: run `scripts/services.sh up` and "
            '`eval "$(scripts/services.sh env)"`, or use the README\'s test command'
        )
    s = Settings(OBSERVATORY_NAMESPACE=scratch(namespace))
    yield s
    failed = [problem for ns in sorted(SCRATCH_NAMESPACES) for problem in cleanup.drop_namespace(ns)]
    assert not failed, failed


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


# --- end-to-end stacks: one loopback Ray cluster per test module and mode -------------------------------


MODES = ("real", "embedded")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each module's tests grouped by the mode they run in, in a stable order: one stack per module and mode.
    pytest groups by a value's position in its parametrization, and a test that asks for one mode alone
    (`parametrize("mode", ["embedded"], indirect=True)`) numbers it 0, as the fixture numbers "real"."""
    modules: dict[str, int] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], len(modules))

    def order(item: pytest.Item) -> tuple[int, int]:
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("mode") if callspec else None
        return modules[item.nodeid.split("::")[0]], MODES.index(mode) if mode in MODES else -1

    items.sort(key=order)


@pytest.fixture(scope="module", params=list(MODES))
def mode(request, settings, tmp_path_factory) -> tuple[str, Settings]:
    """real: the four servers; embedded: no connection variables at all, data under a fresh folder.
    Each test module gets a namespace of its own, so no module sees another's jobs or counters."""
    ns = f"{settings.namespace}_{request.module.__name__.rsplit('_', 1)[-1][:8]}"
    data_dir = tmp_path_factory.mktemp(request.param)
    if request.param == "real":
        return "real", Settings(OBSERVATORY_NAMESPACE=scratch(ns), OBSERVATORY_DATA_DIR=data_dir)
    return "embedded", Settings(OBSERVATORY_NAMESPACE=ns, OBSERVATORY_DATA_DIR=data_dir, **dict.fromkeys(CONNECTIONS))


@pytest.fixture(scope="module")
def truth(mode) -> Iterator[backends.Backends]:
    """The backends of the mode under test, to compare the API with the stored truth."""
    b = backends.build(mode[1])
    b.setup()
    yield b
    b.close()


@pytest.fixture(scope="module")
def api(request, mode) -> Iterator[httpx.Client]:
    """The observatory on a loopback cluster; a test module may add settings in its CLUSTER_ENV."""
    name, s = mode
    env = {
        "OBSERVATORY_NAMESPACE": s.namespace,
        "OBSERVATORY_DATA_DIR": str(s.data_dir),
        **FAST_RETRIES,
        **getattr(request.module, "CLUSTER_ENV", {}),
    }
    drop = CONNECTIONS if name == "embedded" else ()
    # Torn down with one `ray stop --force`: a graceful `serve shutdown` costs ~30 s per cluster here, and
    # test_restart covers both ways of stopping.
    with serve_cluster(env, drop, hard_stop=True) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert_backends(client, real=name == "real")
        yield client
