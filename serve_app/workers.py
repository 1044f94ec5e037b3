"""The workers application: a Serve deployment that owns the processor and aggregator actors.

It has no HTTP route. Its supervisor thread re-creates dead actors and publishes jobs whose
`job.created` was never confirmed (the sweeper), so the whole system is one Serve config. A second thread
removes old finished jobs (observatory.retention), which may take long after an outage or a first start.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from actors.aggregator import AggregatorActor
from actors.processor import ProcessorActor
from actors.supervisor import ActorSpec, Supervisor
from contracts.workers import WorkerActor, WorkerKind, WorkersStatus, WorkerState
from observatory import backends, logs, retention
from observatory.errors import BackendUnavailable
from observatory.events import producer
from observatory.metrics import metrics
from observatory.settings import get_settings
from observatory.submission import sweep
from observatory.topology import QUEUES

log = logging.getLogger(__name__)

ACTOR_NAMESPACE = "observatory"


class WorkersArgs(BaseModel):
    """The `args` of the workers application in serve_app/config.yaml."""

    model_config = ConfigDict(extra="forbid")
    processors: int = Field(default=2, ge=1, le=256)
    aggregators: int = Field(default=1, ge=1, le=64)
    prefetch: int = Field(default=4, ge=1, le=256, description="Isolated jobs (Ray tasks) in flight per processor.")
    batch_size: int = Field(default=64, ge=1, le=1000, description="Inline jobs per micro-batch of a processor.")
    event_prefetch: int = Field(default=64, ge=1, le=1000)
    check_interval_s: float = Field(default=2.0, gt=0, le=60)
    placement: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources that processors, aggregators and job handler tasks each ask for, so they "
        "run only on nodes that offer them (on KubeRay the worker group offers `observatory-worker`).",
    )


def _specs(args: WorkersArgs) -> list[ActorSpec]:
    def make(cls: Any, kind: WorkerKind, name: str, *actor_args: Any) -> ActorSpec:
        options = {"name": name, "namespace": ACTOR_NAMESPACE, "resources": args.placement}
        return ActorSpec(name, lambda: cls.options(**options).remote(name, *actor_args), kind.value)

    processors = [
        make(ProcessorActor, WorkerKind.PROCESSOR, f"processor-{i}", args.prefetch, args.batch_size, args.placement)
        for i in range(args.processors)
    ]
    aggregators = [
        make(AggregatorActor, WorkerKind.AGGREGATOR, f"aggregator-{i}", args.event_prefetch)
        for i in range(args.aggregators)
    ]
    return processors + aggregators


def worker_actor(info: dict[str, Any]) -> WorkerActor:
    """One entry of the supervisor's pass as the contract has it (an actor's `info` carries more)."""
    return WorkerActor(
        name=info["name"],
        kind=WorkerKind(info["kind"]),
        state=WorkerState(info["state"]),
        node_id=info.get("node_id"),
        node_ip=info.get("node_ip"),
        pid=info.get("pid"),
        connected=info.get("connected"),
        in_flight=info.get("in_flight"),
        handled=info.get("handled"),
        restarts=info["restarts"],
        last_seen=info.get("last_seen"),
    )


def workers_status(
    checked_at: datetime | None, infos: dict[str, dict[str, Any]], desired: int, bounds: tuple[int, int]
) -> WorkersStatus:
    actors = [worker_actor(info) for info in infos.values()]
    alive = [a for a in actors if a.kind is WorkerKind.PROCESSOR and a.state is WorkerState.ALIVE]
    return WorkersStatus(
        desired=desired,
        actual=len(alive),
        min=bounds[0],
        max=bounds[1],
        aggregators=sum(a.kind is WorkerKind.AGGREGATOR for a in actors),
        checked_at=checked_at,
        actors=actors,
    )


@serve.deployment(name="Workers", num_replicas=1)
class Workers:
    def __init__(self, args: WorkersArgs) -> None:
        settings = get_settings()
        logs.configure(settings.log_level)
        self._settings = settings
        self._args = args
        self._backends = backends.build(settings, pool_size=2)
        self._backends.setup()
        self._source = producer("sweeper", settings.instance_id)
        # The processors wanted now: the one number an autoscaler would change (within min..max).
        self._desired = args.processors
        self._bounds = (args.processors, args.processors)
        self._supervisor = Supervisor(_specs(args))
        self._supervisor.reconcile()  # create the actors before the replica reports healthy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()
        self._retention: threading.Thread | None = None
        if settings.retention_days > 0:  # 0: kept forever
            self._retention = threading.Thread(target=self._retain, name="retention", daemon=True)
            self._retention.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._args.check_interval_s):
            try:
                self._supervisor.reconcile()
                sample(self._backends)
                sweep(self._backends.jobs, self._backends.bus, self._source, self._settings.sweep_after_s)
            except BackendUnavailable as e:
                log.warning("supervisor pass skipped: %s", e)
            except Exception:
                log.exception("supervisor pass failed")

    def _retain(self) -> None:
        s = self._settings
        retention.keep(self._backends, s.retention_days, s.retention_interval_s, self._stop, metrics().retained)

    def status(self) -> dict[str, Any]:
        """The processors and aggregators as of the supervisor's last pass (a WorkersStatus as JSON). Called
        through a DeploymentHandle (`GET /read/workers`); it never waits on an actor."""
        checked_at, infos = self._supervisor.snapshot()
        return workers_status(checked_at, infos, self._desired, self._bounds).model_dump(mode="json")

    def check_health(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("supervisor thread stopped")
        if self._retention is not None and not self._retention.is_alive():
            raise RuntimeError("retention thread stopped")

    def __del__(self) -> None:
        self._stop.set()
        self._supervisor.stop()


def sample(b: backends.Backends) -> None:
    """Export queue depths, consumers, dead letters and backend health (one place for the whole system)."""
    m = metrics()
    down = b.down()
    for name in ("bus", "jobs", "events", "counters"):
        m.store_up.set(0 if name in down else 1, tags={"backend": name})
    try:
        for queue in QUEUES:
            m.queue_depth.set(b.bus.depth(queue), tags={"queue": queue})
            m.queue_consumers.set(b.bus.consumers(queue), tags={"queue": queue})
        m.dead_letters.set(b.jobs.dead_letter_count())
    except BackendUnavailable as e:
        log.warning("metrics sample skipped: %s", e)


def build(args: dict[str, Any]) -> Application:
    """App builder named by the config's import_path; `args` come from the config."""
    return Workers.bind(WorkersArgs.model_validate(args))
