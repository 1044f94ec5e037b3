"""Keeps a fixed set of named actors alive: creates them, pings them, re-creates the dead ones."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import GetTimeoutError, RayActorError

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 10.0  # an actor that cannot answer `info` this fast is treated as dead


@dataclass(frozen=True)
class ActorSpec:
    name: str
    create: Callable[[], ActorHandle]
    kind: str = "processor"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Supervisor:
    """One thread calls `reconcile`; any thread may read `snapshot` meanwhile: a pass is built aside and
    published whole under a lock, so a reader never waits on an actor and never sees half a pass."""

    def __init__(self, specs: list[ActorSpec], clock: Callable[[], datetime] = _utcnow) -> None:
        self._specs = specs
        self._clock = clock
        self._handles: dict[str, ActorHandle] = {}
        self._lock = threading.Lock()
        self.restarts: dict[str, int] = {s.name: 0 for s in specs}
        self.last: dict[str, dict[str, Any]] = {}
        self.checked_at: datetime | None = None

    def reconcile(self) -> dict[str, dict[str, Any]]:
        """One pass: every actor answers `info`, or is replaced. Returns name -> last info (see `snapshot`)."""
        pending = {s.name: self._handles[s.name].info.remote() for s in self._specs if s.name in self._handles}
        last = dict(self.last)
        restarts = dict(self.restarts)
        for spec in self._specs:
            ref = pending.get(spec.name)
            if ref is None:
                self._handles[spec.name] = spec.create()
                last[spec.name] = {"name": spec.name, "state": "starting", "last_seen": None}
                continue
            try:
                info = ray.get(ref, timeout=PING_TIMEOUT_S)
                last[spec.name] = {**info, "state": "alive", "last_seen": self._clock()}
            except (RayActorError, GetTimeoutError) as e:
                log.warning("actor %s is gone (%s); re-creating it", spec.name, type(e).__name__)
                ray.kill(self._handles.pop(spec.name), no_restart=True)
                restarts[spec.name] += 1
                self._handles[spec.name] = spec.create()
                seen = last.get(spec.name, {}).get("last_seen")  # when the one it replaces last answered
                last[spec.name] = {"name": spec.name, "state": "restarted", "last_seen": seen}
        with self._lock:
            self.last, self.restarts, self.checked_at = last, restarts, self._clock()
        return self.snapshot()[1]

    def snapshot(self) -> tuple[datetime | None, dict[str, dict[str, Any]]]:
        """The last pass, copied: when it ended, and name -> info with `kind`, `state`, `last_seen`, `restarts`."""
        with self._lock:
            checked_at, last, restarts = self.checked_at, self.last, self.restarts
        kinds = {s.name: s.kind for s in self._specs}
        return checked_at, {
            name: {**info, "kind": kinds[name], "restarts": restarts[name]} for name, info in last.items()
        }

    def stop(self) -> None:
        for handle in self._handles.values():
            try:
                ray.get(handle.stop.remote(), timeout=15)
            except (RayActorError, GetTimeoutError):
                pass
            ray.kill(handle, no_restart=True)
        self._handles.clear()
