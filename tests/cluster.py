"""Start and stop a loopback Ray cluster with serve_app/config.yaml deployed, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "serve_app" / "config.yaml"
API = "http://127.0.0.1:8000"
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
            codes = [httpx.get(f"{API}{p}", timeout=5).status_code for p in ("/api/readyz", "/read/readyz")]
            if codes == [200, 200]:
                return
            last = str(codes)
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(1)
    raise RuntimeError(f"observatory not ready after {timeout_s}s: {last}")


@contextmanager
def serve_cluster(extra_env: dict[str, str], drop: tuple[str, ...] = (), hard_stop: bool = False) -> Iterator[str]:
    """`drop` names variables to remove (e.g. the connection URLs, for the embedded mode); `hard_stop`
    kills every Ray process at once instead of shutting Serve down first, like a machine crash."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", **extra_env}
    for name in drop:
        env.pop(name, None)
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
            "4",
            "--disable-usage-stats",
        ],
        env,
    )
    try:
        _run([str(BIN / "serve"), "deploy", str(CONFIG), "--address", "http://127.0.0.1:8265"], env)
        wait_ready()
        yield API
    finally:
        if not hard_stop:
            _run([str(BIN / "serve"), "shutdown", "-y", "--address", "http://127.0.0.1:8265"], env, check=False)
        _run([str(BIN / "ray"), "stop", "--force"], env, check=False)
