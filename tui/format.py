"""Small text helpers the screens share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

STATUS_STYLE = {
    "PENDING": "yellow",
    "RUNNING": "cyan",
    "RETRYING": "magenta",
    "COMPLETED": "green",
    "FAILED": "red",
    "DEAD_LETTERED": "bold red",
    "CANCELLED": "dim",
}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def age(stamp: str | None, now: datetime | None = None) -> str:
    t = parse(stamp)
    if t is None:
        return "-"
    s = int(((now or datetime.now(UTC)) - t).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{max(s, 0)}s"


def gap(a: str | None, b: str | None) -> str:
    ta, tb = parse(a), parse(b)
    if ta is None or tb is None:
        return ""
    return f"+{(tb - ta).total_seconds():.3f}s"


def resources(r: dict[str, Any] | None) -> str:
    """What a job asks Ray for per run, e.g. `1 CPU · 512 MiB · ssd=1` (an inline type's jobs ask for nothing)."""
    if not r:
        return "none (runs in the processor)"
    parts = [f"{r['cpus']:g} CPU" if r.get("cpus") else "", f"{r['memory_mib']} MiB" if r.get("memory_mib") else ""]
    parts += [f"{r['gpus']:g} GPU" if r.get("gpus") else ""]
    parts += [f"{k}={v:g}" for k, v in sorted((r.get("custom") or {}).items())]
    return " · ".join(p for p in parts if p) or "none"


def place(attempt: dict[str, Any]) -> str:
    """Where an attempt's handler ran (its process and node), or why it has not started."""
    if attempt.get("waiting"):
        return f"waiting: {attempt['waiting']}"
    node = attempt.get("node")
    return " · ".join(p for p in (attempt.get("executor"), f"node {node[:8]}" if node else None) if p)
