"""Helpers shared by the end-to-end test modules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from contracts import JobStatus

SETTLE_TIMEOUT_S = 240
CONNECTIONS = ("AMQP_URL", "POSTGRES_DSN", "MONGO_URL", "REDIS_URL")
FAST_RETRIES = {"OBSERVATORY_RETRY_BASE_S": "0.5", "OBSERVATORY_RETRY_MAX_S": "5"}


def wait_for(predicate: Any, what: str, timeout_s: float = SETTLE_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def final_jobs(api: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    jobs = {i: api.get(f"/read/jobs/{i}").json() for i in ids}
    return jobs if all(JobStatus(j["status"]).is_final for j in jobs.values()) else {}


def actor_pids(cls: str) -> set[int]:
    """Pids of live Ray actor processes of a class (Ray titles them `ray::<Class>...`)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(f"ray::{cls}".encode()):
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids
