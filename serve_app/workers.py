"""The workers application: a Serve deployment that owns the processor and aggregator actors.

It has no HTTP route. Its supervisor thread re-creates dead actors and publishes jobs whose
`job.created` was never confirmed (the sweeper), so the whole system is one Serve config. A second thread
removes old finished jobs (observatory.retention), which may take long after an outage or a first start.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from actors.aggregator import AggregatorActor
from actors.processor import ProcessorActor
from actors.supervisor import ActorSpec, Supervisor
from contracts.workers import WorkerActor, WorkerKind, WorkersStatus, WorkerState
from observatory import backends, logs, retention
from observatory.autoscaling import Autoscaler, Decision, ScalePolicy
from observatory.errors import BackendUnavailable
from observatory.events import producer
from observatory.metrics import metrics
from observatory.settings import get_settings
from observatory.submission import sweep
from observatory.topology import QUEUES, WORK_QUEUES

log = logging.getLogger(__name__)

ACTOR_NAMESPACE = "observatory"
PASS_LIMIT_S = 30.0  # how long stopping waits for a supervisor pass under way (pings answer within 10 s)
DRAIN_SLACK_S = 30.0  # past a processor's own drain limit, the supervisor waits this long before killing it


class WorkersArgs(BaseModel):
    """The `args` of the workers application in serve_app/config.yaml."""

    model_config = ConfigDict(extra="forbid")
    processors: int = Field(default=2, ge=1, le=256, description="Processors at start (kept within min..max).")
    min_processors: int | None = Field(default=None, ge=1, le=256, description="Default: `processors`.")
    max_processors: int | None = Field(
        default=None, ge=1, le=256, description="Default: `processors`; above `min_processors` the backlog decides."
    )
    target_backlog: int = Field(default=100, ge=1, le=1_000_000, description="Ready messages per processor.")
    max_wait_s: float = Field(default=30.0, gt=0, le=3600, description="A job waiting longer adds a processor.")
    scale_down_window_s: float = Field(
        default=60.0, ge=0, le=3600, description="Scale down only to the most wanted over this window."
    )
    drain_s: float = Field(
        default=300.0, gt=0, le=3600, description="How long a processor scaled down may finish the jobs it holds."
    )
    aggregators: int = Field(default=1, ge=1, le=64)
    prefetch: int = Field(default=4, ge=1, le=256, description="Isolated jobs (Ray tasks) in flight per processor.")
    batch_size: int = Field(default=64, ge=1, le=1000, description="Inline jobs per micro-batch of a processor.")
    event_prefetch: int = Field(default=64, ge=1, le=1000)
    event_fill_ms: float = Field(
        default=50.0,
        ge=0,
        le=1000,
        description="How long an aggregator batch goes on gathering events after its first: fewer, larger "
        "writes at moderate load; the stats lag the events by up to this much.",
    )
    check_interval_s: float = Field(default=2.0, gt=0, le=60)
    placement: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources that processors, aggregators and job handler tasks each ask for, so they "
        "run only on nodes that offer them (on KubeRay the worker group offers `observatory-worker`).",
    )


def _spec(cls: Any, kind: WorkerKind, name: str, placement: dict[str, float], *actor_args: Any) -> ActorSpec:
    # SPREAD: the pipeline's actors go to different nodes where there are several, so losing one node
    # leaves the others working, and the inline jobs they run use every node.
    options = {"name": name, "namespace": ACTOR_NAMESPACE, "resources": placement, "scheduling_strategy": "SPREAD"}
    return ActorSpec(name, lambda: cls.options(**options).remote(name, *actor_args), kind.value)


def processor_spec(args: WorkersArgs, name: str) -> ActorSpec:
    return _spec(
        ProcessorActor,
        WorkerKind.PROCESSOR,
        name,
        args.placement,
        args.prefetch,
        args.batch_size,
        args.placement,
        args.drain_s,
    )


def aggregator_specs(args: WorkersArgs) -> list[ActorSpec]:
    return [
        _spec(
            AggregatorActor,
            WorkerKind.AGGREGATOR,
            f"aggregator-{i}",
            args.placement,
            args.event_prefetch,
            args.event_fill_ms / 1000,
        )
        for i in range(args.aggregators)
    ]


def scale_policy(args: WorkersArgs) -> ScalePolicy:
    low = args.min_processors or args.processors
    high = args.max_processors or max(args.processors, low)
    return ScalePolicy(low, high, args.target_backlog, args.max_wait_s, args.scale_down_window_s)


def resized(processors: list[str], count: int, taken: set[str]) -> list[str]:
    """The processor names to keep for `count`: the oldest kept when shrinking (the newest are drained), the
    lowest free numbers added when growing (a name still draining is not free)."""
    if count <= len(processors):
        return processors[:count]
    out, i = list(processors), 0
    while len(out) < count:
        if (name := f"processor-{i}") not in taken and name not in out:
            out.append(name)
        i += 1
    return out


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
        self._policy = scale_policy(args)
        # The processors wanted now: the one number the autoscaler changes (within min..max).
        self._desired = min(max(args.processors, self._policy.min), self._policy.max)
        self._autoscaler = Autoscaler(self._policy, self._desired)
        self._bounds = (self._policy.min, self._policy.max)
        self._decision: Decision | None = None
        self._processors = [f"processor-{i}" for i in range(self._desired)]
        self._supervisor = Supervisor(self._all_specs(), drain_limit_s=args.drain_s + DRAIN_SLACK_S)
        self._supervisor.reconcile()  # create the actors before the replica reports healthy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()
        self._retention: threading.Thread | None = None
        if settings.retention_days > 0:  # 0: kept forever
            self._retention = threading.Thread(target=self._retain, name="retention", daemon=True)
            self._retention.start()

    def _all_specs(self) -> list[ActorSpec]:
        return [processor_spec(self._args, name) for name in self._processors] + aggregator_specs(self._args)

    def _scale(self) -> None:
        """One autoscaling decision from the backlog; a change resizes the supervisor's set (drains the extra)."""
        if self._policy.fixed:
            return
        b = self._backends
        backlog = sum(b.bus.depth(q) for q in WORK_QUEUES)
        oldest = b.jobs.oldest_pending()
        waited = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else None
        d = self._autoscaler.decide(backlog, waited, len(self._processors))
        self._decision = d
        m = metrics()
        m.processors_desired.set(d.desired)
        m.autoscaler_backlog.set(backlog)
        if d.desired != len(self._processors):
            log.warning(
                "scaling processors %d -> %d: %s",
                len(self._processors),
                d.desired,
                d.reason,
                extra={"desired": d.desired, "actual": len(self._processors), "backlog": backlog},
            )
            m.scalings.inc(tags={"direction": "up" if d.desired > len(self._processors) else "down"})
            self._processors = resized(self._processors, d.desired, self._supervisor.names())
            self._desired = d.desired
            self._supervisor.resize(self._all_specs())

    def _watch(self) -> None:
        while not self._stop.wait(self._args.check_interval_s):
            try:
                self._scale()
            except BackendUnavailable as e:  # no backlog to read: keep the count, supervise anyway
                log.warning("autoscaling pass skipped: %s", e)
            except Exception:
                log.exception("autoscaling pass failed")
            try:
                infos = self._supervisor.reconcile()
                alive = sum(1 for i in infos.values() if i.get("kind") == "processor" and i["state"] == "alive")
                metrics().processors_actual.set(alive)
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
        status = workers_status(checked_at, infos, self._desired, self._bounds)
        if (d := self._decision) is not None:
            status.backlog, status.oldest_wait_s, status.reason = d.backlog, d.oldest_wait_s, d.reason
        return status.model_dump(mode="json")

    def check_health(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("supervisor thread stopped")
        if self._retention is not None and not self._retention.is_alive():
            raise RuntimeError("retention thread stopped")

    def __del__(self) -> None:
        self._stop.set()
        self._thread.join(timeout=PASS_LIMIT_S)  # a pass under way ends first: it may be creating actors
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
