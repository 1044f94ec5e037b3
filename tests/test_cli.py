"""The `observatory` command as a user runs it."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.cluster import BIN
from tests.helpers import CONNECTIONS, wait_for

OBSERVATORY = str(BIN / "observatory")
READY_TIMEOUT_S = 240


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OBSERVATORY, *args], capture_output=True, text=True, timeout=60, env=env)


def test_bad_payload_json_is_one_line_and_exit_2():
    r = run("submit", "hash", "--payload", "{nope")

    assert r.returncode == 2
    assert r.stderr.startswith("error: --payload is not valid JSON") and len(r.stderr.splitlines()) == 1


def test_unreachable_api_is_one_line_and_exit_1():
    r = run("status", env={**os.environ, "OBSERVATORY_API_URL": "http://127.0.0.1:9"})

    assert r.returncode == 1
    assert "cannot reach the observatory" in r.stderr and len(r.stderr.splitlines()) == 1


def test_up_refuses_a_port_in_use(tmp_path):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections of earlier tests may linger in TIME_WAIT
        s.bind(("127.0.0.1", 8000))
        s.listen()
        r = run("up", "--data-dir", str(tmp_path))

    assert r.returncode == 1
    assert "port 8000" in r.stderr and "in use" in r.stderr


@pytest.mark.e2e
def test_up_runs_the_embedded_observatory_and_stops_cleanly_on_sigterm(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in CONNECTIONS}
    up = subprocess.Popen(
        [OBSERVATORY, "up", "--data-dir", str(tmp_path), "--processors", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()  # read aside, so no read can hang the test
    reader = threading.Thread(target=lambda: [*map(lines.put, up.stdout), lines.put(None)], daemon=True)
    reader.start()
    try:
        seen = _lines_until(lines, "ready.", READY_TIMEOUT_S)
        assert "bus=embedded" in seen[0] and "counters=embedded" in seen[0]

        job_id = run("submit", "primes", "--payload", json.dumps({"limit": 1000}), env=env).stdout.strip()
        shown = wait_for(
            lambda: (r := run("job", job_id, env=env)).returncode == 0 and "job.completed" in r.stdout and r.stdout,
            "the job to complete",
            60,
        )
        assert '"count": 168' in shown and "  status       COMPLETED" in shown and "job.completed" in shown
        raw = json.loads(run("job", job_id, "--json", env=env).stdout)
        assert raw["result"] == {"limit": 1000, "count": 168}
        listed = run("jobs", "--type", "primes", env=env)
        assert listed.returncode == 0 and job_id in listed.stdout and "COMPLETED" in listed.stdout
        st = run("status", env=env).stdout
        assert st.startswith("jobs 1: pending 0, running 0, retrying 0, completed 1, failed 0, dead-lettered 0")
        assert run("dlq", env=env).stdout.strip() == "no dead letters"
        refused = run("dlq", "requeue", job_id, env=env)
        assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=120)
    rest = "".join(_lines_until(lines, None, 10))
    assert up.returncode == 0 and "stopped." in rest
    assert not any(p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_raylet(p))


def _lines_until(lines: queue.Queue[str | None], prefix: str | None, timeout_s: float) -> list[str]:
    """Lines up to the first starting with `prefix` (None: up to the end of the output), within the time."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {prefix or 'end of output'!r} within {timeout_s}s:\n" + "".join(got)) from None
        if line is None:
            assert prefix is None, "observatory up exited early:\n" + "".join(got)
            return got
        got.append(line)
        if prefix is not None and line.startswith(prefix):
            return got


def _is_raylet(proc: Path) -> bool:
    try:
        return (proc / "comm").read_text().strip() == "raylet"
    except OSError:
        return False
