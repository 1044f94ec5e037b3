"""The machine a run was measured on, printed above the table: numbers mean little without it."""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str]:
    physical = psutil.cpu_count(logical=False)
    return {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical" + (f", {physical} physical" if physical else ""),
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "Ray": package_version("ray"),
        "Celery": package_version("celery"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_back() -> float:
    """Have the kernel write every dirty page out now (sync(2)); the seconds it took.

    Called before each single-submit round and the submit→completed phase, so that each starts with no dirty
    pages left by the ones before: PostgreSQL's tables grow by ~130 MB in the heavy phases, the kernel holds
    that in its page cache and writes it back in one burst ~30 s later (its dirty expiry), and on the benchmark
    machine that burst (~760 MB/s, ~80 requests queued at the disk) held every commit's fsync for 200-280 ms."""
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start
