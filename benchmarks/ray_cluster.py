"""A loopback Ray cluster with the Serve config deployed, as a user runs it (the same steps as
tests/cluster.py, which the benchmark does not import), and the clean-up of a run's namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.measure import BenchError
from observatory.serve_ingress import ray_env

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "serve_app" / "config.yaml"
API = "http://127.0.0.1:8000"
DASHBOARD = "http://127.0.0.1:8265"
BIN = Path(sys.executable).parent
RAY_GCS_PORT = "6380"  # not 6379: that is Redis's
READY_TIMEOUT_S = 240
CONNECTIONS = ("AMQP_URL", "POSTGRES_DSN", "MONGO_URL", "REDIS_URL")


@dataclass
class Cluster:
    api: str
    mode: str
    namespace: str
    started_at: float  # epoch seconds, to tell this cluster's processes from older ones


def fresh_namespace() -> str:
    return f"bench_{uuid.uuid4().hex[:10]}"


def configured_processors() -> int:
    return int(_workers_app(yaml.safe_load(CONFIG.read_text()))["args"]["processors"])


def _workers_app(config: dict[str, Any]) -> dict[str, Any]:
    return next(app for app in config["applications"] if app["name"] == "workers")


def _config_copy(processors: int | None, folder: Path) -> Path:
    """serve_app/config.yaml with the processor count changed; the checked-in file is never touched."""
    config = yaml.safe_load(CONFIG.read_text())
    if processors is not None:
        _workers_app(config).setdefault("args", {})["processors"] = processors
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _run(args: list[str], env: dict[str, str], check: bool = True) -> None:
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _wait_ready(timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            codes = [httpx.get(f"{API}{p}", timeout=5).status_code for p in ("/api/readyz", "/read/readyz")]
            if codes == [200, 200]:
                return
            last = str(codes)
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(1)
    raise BenchError(f"observatory not ready after {timeout_s}s: {last}")


def _env(mode: str, namespace: str, data_dir: Path) -> dict[str, str]:
    env = {
        **ray_env(),
        "OBSERVATORY_NAMESPACE": namespace,
        "OBSERVATORY_DATA_DIR": str(data_dir),
        # The rate limit stays on (its bucket is paid for on every submission) but far above what is offered:
        # the benchmark measures throughput, not the limit.
        "OBSERVATORY_RATE_LIMIT": "1000000",
        "OBSERVATORY_RATE_BURST": "1000000",
    }
    if mode == "embedded":  # no connection variable at all: every backend is the embedded one
        for name in CONNECTIONS:
            env.pop(name, None)
    elif missing := [name for name in CONNECTIONS if not env.get(name)]:
        raise BenchError(f'real mode needs {", ".join(missing)} (eval "$(scripts/services.sh env)")')
    return env


@contextmanager
def serve_cluster(mode: str, processors: int | None = None) -> Iterator[Cluster]:
    """Start Ray on loopback with all cores, deploy the config, wait until both apps are ready; stop it all
    afterwards. A fresh namespace per cluster makes its counters start at zero."""
    namespace = fresh_namespace()
    with tempfile.TemporaryDirectory(prefix="observatory-bench-") as tmp:
        folder = Path(tmp)
        env = _env(mode, namespace, folder / "data")
        config = _config_copy(processors, folder)
        ray, serve = str(BIN / "ray"), str(BIN / "serve")
        _run([ray, "stop", "--force"], env, check=False)
        started_at = time.time()
        try:
            _run(
                [ray, "start", "--head", "--port", RAY_GCS_PORT, "--node-ip-address", "127.0.0.1"]
                + ["--dashboard-host", "127.0.0.1", "--num-cpus", str(os.cpu_count() or 1), "--disable-usage-stats"],
                env,
            )
            _run([serve, "deploy", str(config), "--address", DASHBOARD], env)
            _wait_ready()
            yield Cluster(API, mode, namespace, started_at)
        finally:
            _run([serve, "shutdown", "-y", "--address", DASHBOARD], env, check=False)
            _run([ray, "stop", "--force"], env, check=False)
