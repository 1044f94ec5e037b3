"""Keeps a set of named actors alive: creates them, pings them, re-creates the dead ones. The set may change
(`resize`): an actor that leaves it is drained (its `drain()` lets it finish what it holds), then removed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 10.0  # a started actor that cannot answer `info` this fast is treated as dead
# A new actor may wait for a node with room, a worker process to start (seconds each on a busy node) and its own
# set-up: it shows as starting meanwhile, and is re-created only if its creation fails or takes longer than this.
START_LIMIT_S = 180.0
STOP_LIMIT_S = 15.0  # how long `stop` waits for the actors to stop themselves before killing them
DRAIN_LIMIT_S = 330.0  # a draining actor still there after this is killed (its unacked messages go back)


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

    def __init__(
        self,
        specs: list[ActorSpec],
        clock: Callable[[], datetime] = _utcnow,
        drain_limit_s: float = DRAIN_LIMIT_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
        start_limit_s: float = START_LIMIT_S,
    ) -> None:
        self._specs = list(specs)
        self._clock = clock
        self._drain_limit_s = drain_limit_s
        self._ping_timeout_s = ping_timeout_s
        self._start_limit_s = start_limit_s
        self._handles: dict[str, ActorHandle] = {}
        # name -> (its `__ray_ready__`, when it was created): the actors not yet started, never pinged
        self._starting: dict[str, tuple[ray.ObjectRef, float]] = {}
        self._draining: dict[str, tuple[ActorHandle, ray.ObjectRef, float, ActorSpec]] = {}
        self._lock = threading.Lock()
        self.restarts: dict[str, int] = {s.name: 0 for s in specs}
        self.last: dict[str, dict[str, Any]] = {}
        self.checked_at: datetime | None = None

    def names(self) -> set[str]:
        """Every name in use: the actors kept and those still draining (a new actor must not take one)."""
        return {s.name for s in self._specs} | set(self._draining)

    def resize(self, specs: list[ActorSpec]) -> None:
        """Keep `specs` from now on (called by the thread that reconciles): new ones are created at the next
        pass; those left out are drained, and removed once drained (one not started yet holds nothing: killed)."""
        keep = {s.name for s in specs}
        for spec in self._specs:
            if spec.name not in keep and spec.name in self._handles:
                handle = self._handles.pop(spec.name)
                if self._forget_start(spec.name):
                    ray.kill(handle, no_restart=True)
                    log.info("removed %s before it started", spec.name)
                    continue
                self._draining[spec.name] = (handle, handle.drain.remote(), time.monotonic(), spec)
                log.info("draining %s", spec.name)
        for spec in specs:
            self.restarts.setdefault(spec.name, 0)
        self._specs = list(specs)

    def reconcile(self) -> dict[str, dict[str, Any]]:
        """One pass: every started actor answers `info`, or is replaced; one still starting is left to start
        (replaced if its creation failed or is past the start limit). Returns name -> last info (see `snapshot`)."""
        gone = self._settle_starts()
        started = [s.name for s in self._specs if s.name in self._handles and s.name not in self._starting]
        answers = self._ping([name for name in started if name not in gone], gone)
        last = dict(self.last)
        restarts = dict(self.restarts)
        for spec in self._specs:
            if spec.name not in self._handles:
                self._create(spec)
                last[spec.name] = {"name": spec.name, "state": "starting", "last_seen": None}
            elif spec.name in answers:
                last[spec.name] = {**answers[spec.name], "state": "alive", "last_seen": self._clock()}
            elif spec.name in gone:
                log.warning("actor %s is gone (%s); re-creating it", spec.name, gone[spec.name])
                ray.kill(self._handles.pop(spec.name), no_restart=True)
                restarts[spec.name] += 1
                self._create(spec)
                seen = last.get(spec.name, {}).get("last_seen")  # when the one it replaces last answered
                last[spec.name] = {"name": spec.name, "state": "restarted", "last_seen": seen}
            # else: still starting, and "starting" (or "restarted") as the pass that created it said
        self._settle_drains(last)
        with self._lock:
            self.last, self.restarts, self.checked_at = last, restarts, self._clock()
        return self.snapshot()[1]

    def _ping(self, names: list[str], gone: dict[str, str]) -> dict[str, dict[str, Any]]:
        """`info` of each actor of `names` (started ones), all asked at once and answered under one limit (before any
        actor is created or killed); those that fail or miss it are added to `gone`."""
        pending = {name: self._handles[name].info.remote() for name in names}
        deadline = time.monotonic() + self._ping_timeout_s
        answers: dict[str, dict[str, Any]] = {}
        for name, ref in pending.items():
            try:
                answers[name] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except RayError as e:  # died, missed the limit, or lost its node (unschedulable, object lost)
                gone[name] = type(e).__name__
        return answers

    def _create(self, spec: ActorSpec) -> None:
        handle = spec.create()
        self._handles[spec.name] = handle
        self._starting[spec.name] = (handle.__ray_ready__.remote(), time.monotonic())

    def _forget_start(self, name: str) -> bool:
        """Stop watching `name`'s start (it is being removed); returns whether it had not started yet."""
        ready = self._starting.pop(name, None)
        return ready is not None and not ray.wait([ready[0]], timeout=0)[0]

    def _settle_starts(self) -> dict[str, str]:
        """Forget the actors that have started; returns those whose start failed or is overdue, with why."""
        failed: dict[str, str] = {}
        for name, (ref, since) in list(self._starting.items()):
            if ray.wait([ref], timeout=0)[0]:
                try:
                    ray.get(ref, timeout=0)
                except RayError as e:  # its constructor raised, or it could not be placed
                    failed[name] = f"its creation failed: {type(e).__name__}"
                del self._starting[name]
            elif time.monotonic() - since > self._start_limit_s:
                failed[name] = f"not started after {self._start_limit_s:g} s"
                del self._starting[name]
        return failed

    def _settle_drains(self, last: dict[str, dict[str, Any]]) -> None:
        """Remove the drained actors (and those past the drain limit); the others show as draining."""
        for name, (handle, ref, since, _) in list(self._draining.items()):
            ready, _ = ray.wait([ref], timeout=0)
            overdue = time.monotonic() - since > self._drain_limit_s
            if ready or overdue:
                try:
                    handled = ray.get(ref, timeout=0) if ready else None
                except RayError as e:
                    handled = f"unknown ({type(e).__name__})"
                log.info("%s %s (handled %s); removing it", name, "drained" if ready else "overdue", handled)
                ray.kill(handle, no_restart=True)
                del self._draining[name]
                last.pop(name, None)
            else:
                last[name] = {**last.get(name, {"name": name, "last_seen": None}), "state": "draining"}

    @property
    def draining(self) -> int:
        return len(self._draining)

    def snapshot(self) -> tuple[datetime | None, dict[str, dict[str, Any]]]:
        """The last pass, copied: when it ended, and name -> info with `kind`, `state`, `last_seen`, `restarts`."""
        with self._lock:
            checked_at, last, restarts = self.checked_at, self.last, self.restarts
        kinds = {s.name: s.kind for s in self._specs} | {n: d[3].kind for n, d in list(self._draining.items())}
        return checked_at, {
            name: {**info, "kind": kinds.get(name, "processor"), "restarts": restarts.get(name, 0)}
            for name, info in last.items()
            if name in kinds
        }

    def stop(self) -> None:
        for handle, _, _, _ in self._draining.values():
            ray.kill(handle, no_restart=True)
        self._draining.clear()
        # An actor not started yet holds nothing: killed at once. The others stop at once (each settles what it
        # holds), under one shared limit.
        stopping = []
        for name, handle in list(self._handles.items()):
            if self._forget_start(name):
                ray.kill(handle, no_restart=True)
            else:
                stopping.append((handle, handle.stop.remote()))
        self._starting.clear()
        deadline = time.monotonic() + STOP_LIMIT_S
        for handle, ref in stopping:
            try:
                ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except RayError:
                pass
            ray.kill(handle, no_restart=True)
        self._handles.clear()
