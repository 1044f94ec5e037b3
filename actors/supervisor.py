"""Keeps a fixed set of named actors alive: creates them, pings them, re-creates the dead ones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
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


class Supervisor:
    def __init__(self, specs: list[ActorSpec]) -> None:
        self._specs = specs
        self._handles: dict[str, ActorHandle] = {}
        self.restarts: dict[str, int] = {s.name: 0 for s in specs}
        self.last: dict[str, dict[str, Any]] = {}

    def reconcile(self) -> dict[str, dict[str, Any]]:
        """One pass: every actor answers `info`, or is replaced. Returns name -> last info."""
        pending = {s.name: self._handles[s.name].info.remote() for s in self._specs if s.name in self._handles}
        for spec in self._specs:
            ref = pending.get(spec.name)
            if ref is None:
                self._handles[spec.name] = spec.create()
                self.last[spec.name] = {"name": spec.name, "state": "starting"}
                continue
            try:
                self.last[spec.name] = {**ray.get(ref, timeout=PING_TIMEOUT_S), "state": "alive"}
            except (RayActorError, GetTimeoutError) as e:
                log.warning("actor %s is gone (%s); re-creating it", spec.name, type(e).__name__)
                ray.kill(self._handles.pop(spec.name), no_restart=True)
                self.restarts[spec.name] += 1
                self._handles[spec.name] = spec.create()
                self.last[spec.name] = {"name": spec.name, "state": "restarted"}
        return {name: {**info, "restarts": self.restarts[name]} for name, info in self.last.items()}

    def stop(self) -> None:
        for handle in self._handles.values():
            try:
                ray.get(handle.stop.remote(), timeout=15)
            except (RayActorError, GetTimeoutError):
                pass
            ray.kill(handle, no_restart=True)
        self._handles.clear()
