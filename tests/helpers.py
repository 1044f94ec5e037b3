"""Helpers shared by the end-to-end test modules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from contracts import JobStatus, Stats
from observatory.backends import Backends
from observatory.views import stats_differences
from tests.cluster import CONFIG

SETTLE_TIMEOUT_S = 240
CONNECTIONS = ("AMQP_URL", "POSTGRES_DSN", "MONGO_URL", "REDIS_URL")
FAST_RETRIES = {"OBSERVATORY_RETRY_BASE_S": "0.5", "OBSERVATORY_RETRY_MAX_S": "5"}
# Namespaces this test session used on the shared servers; their queues are deleted when it ends.
SCRATCH_NAMESPACES: set[str] = set()
# Generation only: tighter upper bounds keep the fuzz's jobs quick (it drives the pipeline, not the CPU); each
# lies inside its field's published range, so a payload held under them stays valid under the published schema.
QUICK = {"rounds": 1000, "limit": 200_000, "samples": 200_000, "shards": 4, "seconds": 1.0}
QUICK_ATTEMPTS = 3
REAL_BACKENDS = {"bus": "rabbitmq", "jobs": "postgresql", "events": "mongodb", "counters": "redis"}


def scratch(namespace: str) -> str:
    """Note a namespace the tests use on the real broker, for the clean-up at the end of the session."""
    SCRATCH_NAMESPACES.add(namespace)
    return namespace


def workers_arg(name: str) -> int:
    """A size from the workers app's `args` in serve_app/config.yaml (e.g. `processors`)."""
    apps = {a["name"]: a for a in yaml.safe_load(CONFIG.read_text())["applications"]}
    return int(apps["workers"]["args"][name])


def wait_for(predicate: Any, what: str, timeout_s: float = SETTLE_TIMEOUT_S, explain: Any = None) -> Any:
    """`explain`: called on a timeout, what it returns goes into the error (what was seen instead)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f": {explain()}" if explain else ""))


def final_jobs(api: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    jobs = {i: api.get(f"/read/jobs/{i}").json() for i in ids}
    return jobs if all(JobStatus(j["status"]).is_final for j in jobs.values()) else {}


def _pids_titled(prefix: bytes, containing: bytes = b"") -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                title = (proc / "cmdline").read_bytes()
                if title.startswith(prefix) and containing in title:
                    pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def parent_pid(pid: int) -> int:
    """The parent of a live process (the field after the parenthesised name in /proc/<pid>/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def process_name(pid: int) -> str:
    """A live process's executable name (/proc/<pid>/comm; not its title, which Ray's workers rewrite)."""
    return Path(f"/proc/{pid}/comm").read_text().strip()


def actor_pids(cls: str) -> set[int]:
    """Pids of live Ray actor processes of a class (Ray titles them `ray::<Class>...`)."""
    return _pids_titled(f"ray::{cls}".encode())


def handler_pids(job_id: str) -> set[int]:
    """Pids of the processes running this job's handler right now: Ray titles a worker executing a task
    `ray::<task name>`, and the runner names each handler task `job:<type>:<job id>`."""
    return _pids_titled(b"ray::job:", job_id.encode())


def alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def stats_match_the_store(api: httpx.Client, truth: Backends) -> dict[str, Any] | None:
    """The read model's stats, when they come from the cache and equal the job store's counts in every
    field (each status, each type); else None."""
    want = Stats.from_counts(truth.jobs.counts()[0], None, "cache").model_dump(mode="json", exclude={"last_event_at"})
    got = api.get("/read/stats").json()
    return got if {k: got[k] for k in want} == want else None


def stats_mismatch(api: httpx.Client, truth: Backends) -> str:
    """How the read model's stats differ from the job store's counts now (for a timeout's message)."""
    got = api.get("/read/stats").json()
    lines = stats_differences(Stats.model_validate(got), truth.jobs.counts())
    return f"source {got['source']}; " + ("; ".join(lines) or "no difference now")


def stats_settle(api: httpx.Client, truth: Backends, what: str, timeout_s: float = SETTLE_TIMEOUT_S) -> dict[str, Any]:
    """Wait until `stats_match_the_store`; a timeout says how they still differ."""
    return wait_for(lambda: stats_match_the_store(api, truth), what, timeout_s, lambda: stats_mismatch(api, truth))


def settled(api: httpx.Client, truth: Backends) -> bool:
    """Nothing is moving: every stored job is final, every event folded in (queue empty, stats equal)."""
    counts = truth.jobs.counts()[0]
    return (
        all(s.is_final for (_, s), n in counts.items() if n)
        and truth.bus.depth("events") == truth.bus.depth("batches") == 0
        and stats_match_the_store(api, truth) is not None
    )


def assert_backends(api: httpx.Client, real: bool) -> None:
    """The deployed apps really use the mode's backends (the choice is per variable and falls back silently)."""
    using = {**api.get("/api/readyz").json()["backends"], **api.get("/read/readyz").json()["backends"]}
    if real:
        assert using == REAL_BACKENDS, using
    else:
        assert all(v.startswith("embedded") for v in using.values()), using


def tcp_listeners() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on this machine (IPv4 from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":  # LISTEN
            hex_ip, hex_port = local.split(":")
            ip = ".".join(str(int(hex_ip[i : i + 2], 16)) for i in (6, 4, 2, 0))  # little-endian
            found.add((ip, int(hex_port, 16)))
    return found
