"""Start and stop a loopback Ray cluster with serve_app/config.yaml deployed, as a user would."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from observatory.loopback_nodes import loopback_nodes
from observatory.serve_ingress import ray_env

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "serve_app" / "config.yaml"
API = "http://127.0.0.1:8000"
DASHBOARD = "http://127.0.0.1:8265"
BIN = Path(sys.executable).parent
RAY_GCS_PORT = "6380"  # not 6379: that is Redis's
READY_TIMEOUT_S = 240


def _run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def wait_ready(timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            codes = [httpx.get(f"{API}{p}", timeout=5).status_code for p in ("/api/readyz", "/read/readyz", "/")]
            if codes == [200, 200, 200]:
                return
            last = str(codes)
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(1)
    raise RuntimeError(f"observatory not ready after {timeout_s}s: {last}")


def _head(env: dict[str, str], cpus: str) -> None:
    _run([str(BIN / "ray"), "stop", "--force"], env, check=False)
    _run(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--port",
            RAY_GCS_PORT,
            "--node-ip-address",
            "127.0.0.1",
            "--dashboard-host",
            "127.0.0.1",
            "--num-cpus",
            cpus,
            "--disable-usage-stats",
        ],
        env,
    )


def _env(extra_env: dict[str, str], drop: tuple[str, ...] = ()) -> dict[str, str]:
    env = ray_env(**extra_env)
    for name in drop:
        env.pop(name, None)
    return env


def _stop(env: dict[str, str], hard_stop: bool = False) -> None:
    if not hard_stop:
        _run([str(BIN / "serve"), "shutdown", "-y", "--address", DASHBOARD], env, check=False)
    _run([str(BIN / "ray"), "stop", "--force"], env, check=False)


@contextmanager
def serve_cluster(extra_env: dict[str, str], drop: tuple[str, ...] = (), hard_stop: bool = False) -> Iterator[str]:
    """`drop` names variables to remove (e.g. the connection URLs, for the embedded mode); `hard_stop`
    kills every Ray process at once instead of shutting Serve down first, like a machine crash."""
    env = _env(extra_env, drop)
    _head(env, "4")
    try:
        _run([str(BIN / "serve"), "deploy", str(CONFIG), "--address", DASHBOARD], env)
        wait_ready()
        yield API
    finally:
        _stop(env, hard_stop)


@contextmanager
def two_node_cluster(
    extra_env: dict[str, str], serve_config: dict[str, Any], worker_resources: dict[str, float], worker_cpus: int
) -> Iterator[str]:
    """A head without CPUs and one worker node offering `worker_resources`, like the RayService's head and
    worker group; `serve_config` is deployed the way the KubeRay operator does it, through the dashboard's
    REST API (PUT /api/serve/applications/)."""
    with multi_node_cluster(extra_env, serve_config, [(worker_cpus, worker_resources)]) as (url, _):
        yield url


@contextmanager
def multi_node_cluster(
    extra_env: dict[str, str], serve_config: dict[str, Any], workers: list[tuple[int, dict[str, float]]]
) -> Iterator[tuple[str, Any]]:
    """A head without CPUs and one worker node per (CPUs, custom resources) of `workers`
    (observatory.loopback_nodes); yields the API's URL and the `ray.cluster_utils.Cluster` (its `worker_nodes`
    can be killed). `serve_config` is deployed the way the KubeRay operator does it, through the dashboard's
    REST API (PUT /api/serve/applications/)."""
    with loopback_nodes(extra_env, workers, int(RAY_GCS_PORT)) as cluster:
        r = httpx.put(f"{DASHBOARD}/api/serve/applications/", json=serve_config, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"PUT /api/serve/applications/ answered {r.status_code}: {r.text[:2000]}")
        wait_ready()
        yield API, cluster
