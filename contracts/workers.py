"""The workers view (`GET /read/workers`): Ray's nodes, and the processors and aggregators the workers app keeps
alive, as of its supervisor's last pass."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

HEAD_MARKER = "node:__internal_head__"  # the resource Ray gives the head node only


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerKind(StrEnum):
    PROCESSOR = "processor"
    AGGREGATOR = "aggregator"


class WorkerState(StrEnum):
    """`starting`: created, not answered yet; `alive`: answered the last ping; `restarted`: did not answer (dead
    or stuck), so it was killed and created again, and the new one has not answered yet; `draining`: scaled
    down, it takes no more jobs and finishes those it holds, then goes."""

    STARTING = "starting"
    ALIVE = "alive"
    RESTARTED = "restarted"
    DRAINING = "draining"


class WorkerActor(_Strict):
    name: str = Field(description="The actor's name, e.g. `processor-0` (kept across restarts).")
    kind: WorkerKind
    state: WorkerState
    node_id: str | None = Field(description="The Ray node it runs on (hex); null until it answered.")
    node_ip: str | None
    pid: int | None
    connected: bool | None = Field(default=None, description="Consuming from the broker right now.")
    in_flight: int | None = Field(default=None, ge=0, description="Jobs in hand (processors only).")
    handled: int | None = Field(
        default=None, ge=0, description="Jobs (processors) or events (aggregators) this incarnation has handled."
    )
    restarts: int = Field(ge=0, description="How often the supervisor re-created it.")
    last_seen: datetime | None = Field(description="When it last answered the supervisor (UTC).")


class WorkersStatus(_Strict):
    """What the Workers deployment's `status()` returns: its supervisor's last pass, never a live call."""

    desired: int = Field(ge=0, description="Processors wanted now.")
    actual: int = Field(ge=0, description="Processors alive at the last pass.")
    min: int = Field(ge=0, description="The fewest processors the workers app may run.")
    max: int = Field(ge=0, description="The most processors the workers app may run.")
    aggregators: int = Field(ge=0, description="Aggregators configured.")
    checked_at: datetime | None = Field(description="When the supervisor's last pass ended (UTC).")
    backlog: int | None = Field(default=None, ge=0, description="Ready messages at the last autoscaling decision.")
    oldest_wait_s: float | None = Field(default=None, description="How long the oldest PENDING job had waited then.")
    reason: str | None = Field(default=None, description="The last autoscaling decision, in words (null: fixed).")
    actors: list[WorkerActor]


class NodeInfo(_Strict):
    node_id: str
    address: str = Field(description="The node's IP address.")
    alive: bool
    is_head: bool
    resources: dict[str, float] = Field(
        description="Total resources: CPU, GPU, memory and object_store_memory (bytes), and custom ones."
    )
    actors: list[str] = Field(description="Names of the processors and aggregators running there.")


class WorkersView(_Strict):
    """`GET /read/workers`: the cluster's nodes and the workers app's status."""

    nodes: list[NodeInfo] = Field(description="Every node Ray knows, the head first; dead ones too (alive false).")
    workers: WorkersStatus

    @classmethod
    def from_ray(cls, nodes: Iterable[Mapping[str, Any]], workers: WorkersStatus) -> WorkersView:
        """Built from `ray.nodes()` entries; each node lists the actors that last reported running on it."""
        placed: dict[str, list[str]] = {}
        for actor in workers.actors:
            if actor.node_id is not None:
                placed.setdefault(actor.node_id, []).append(actor.name)
        infos = [
            NodeInfo(
                node_id=n["NodeID"],
                address=n.get("NodeManagerAddress", ""),
                alive=bool(n.get("Alive", False)),
                is_head=bool(n.get("IsHeadNode", False)) or HEAD_MARKER in n.get("Resources", {}),
                # `node:<ip>` entries only name the node; they are not capacity
                resources={k: float(v) for k, v in n.get("Resources", {}).items() if not k.startswith("node:")},
                actors=placed.get(n["NodeID"], []),
            )
            for n in nodes
        ]
        infos.sort(key=lambda i: (not i.is_head, not i.alive, i.address, i.node_id))
        return cls(nodes=infos, workers=workers)
