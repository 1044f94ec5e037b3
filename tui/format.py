"""Small text helpers the screens share."""

from __future__ import annotations

from datetime import UTC, datetime

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
