"""Runs a job's handler as a Ray task that asks for the job's resources, so Ray places it on a node that has
them, and a timeout or a cancellation can stop it for real: `ray.cancel(force=True)` kills the worker process
running it.

The task is a generator: it first yields where it runs (node and process), then the handler's result. So the
runner knows when the handler started: until then the job waits for resources (the attempt says why, e.g. no
node offers them), and its timeout counts from the start, not from the wait.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from contracts import Job, Resources
from observatory.jobs import default_registry
from observatory.ports import AttemptNote, RanOn
from observatory.processing import Outcome, describe, outcome_of_error

WAIT_S = 0.2  # how often the runner looks at the task
CANCEL_CHECK_S = 1.0  # how often it asks the job store whether the job was cancelled
WAITING_NOTE_S = 2.0  # a handler not started after this long gets a reason on its attempt
WAITING_RECHECK_S = 10.0  # and the reason is looked at again this often
NODES_TTL_S = 5.0  # one look at the cluster's nodes serves every waiting job for this long

Note = Callable[[Job, AttemptNote], None]


def here() -> RanOn:
    """This process: its Ray node and `<pid>@<node ip>`."""
    return RanOn(ray.get_runtime_context().get_node_id(), f"{os.getpid()}@{ray.util.get_node_ip_address()}")


@ray.remote(num_cpus=0, max_retries=0)
def run_handler(job_type: str, payload: dict[str, Any]) -> Any:
    yield here()
    yield default_registry().run(job_type, payload)


def ray_resources(resources: Resources, placement: dict[str, float]) -> dict[str, float]:
    """The amounts a task asks Ray for, by Ray's resource names (what `ray.nodes()` reports)."""
    asked = {"CPU": resources.cpus, "GPU": resources.gpus, "memory": resources.memory_mib * 1024 * 1024}
    asked.update(placement)
    asked.update(resources.custom)
    return {name: amount for name, amount in asked.items() if amount > 0}


def task_options(asked: dict[str, float]) -> dict[str, Any]:
    """Ray task options for `asked`. SPREAD: runs go round the nodes that can take them, light ones too (Ray's
    default would keep those on the processor's node until it is half full)."""
    custom = {k: v for k, v in asked.items() if k not in ("CPU", "GPU", "memory")}
    options: dict[str, Any] = {
        "num_cpus": asked.get("CPU", 0),
        "num_gpus": asked.get("GPU", 0),
        "resources": custom,
        "scheduling_strategy": "SPREAD",
    }
    if "memory" in asked:
        options["memory"] = asked["memory"]
    return options


def _amounts(asked: dict[str, float]) -> str:
    def one(name: str, amount: float) -> str:
        return f"memory {amount / 1024 / 1024:g} MiB" if name == "memory" else f"{name} {amount:g}"

    return ", ".join(one(name, amount) for name, amount in sorted(asked.items()))


class _Nodes:
    """The cluster's live nodes' total resources, looked up at most every NODES_TTL_S (shared by threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = -NODES_TTL_S
        self._totals: list[dict[str, float]] = []

    def totals(self) -> list[dict[str, float]]:
        with self._lock:
            if time.monotonic() - self._at >= NODES_TTL_S:
                self._totals = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
                self._at = time.monotonic()
            return self._totals


_NODES = _Nodes()


def why_waiting(asked: dict[str, float]) -> str:
    """Why a task asking for `asked` has not started: no live node offers that much, or none has it free."""
    if not any(all(total.get(name, 0) >= amount for name, amount in asked.items()) for total in _NODES.totals()):
        return (
            f"unschedulable: no node of the cluster offers {_amounts(asked)}; it waits until one does "
            "(cancel the job to give up)"
        )
    return f"waiting for {_amounts(asked)} to be free on a node"


class RayTaskRunner:
    def __init__(self, placement: dict[str, float] | None = None, note: Note | None = None) -> None:
        self._placement = placement or {}  # custom resources that place handler tasks (e.g. worker nodes)
        self._note = note or (lambda job, note: None)
        self._registry = default_registry()

    def __call__(self, job: Job, cancelled: Callable[[], bool]) -> Outcome:
        jt = self._registry.get(job.type)
        resources = job.resources or (jt.resources if jt is not None else None) or Resources()
        asked = ray_resources(resources, self._placement)
        task = run_handler.options(name=f"job:{job.type}:{job.id}", **task_options(asked))
        gen = task.remote(job.type, job.payload)
        started = self._start(gen, job, asked, cancelled)
        if isinstance(started, Outcome):
            return started
        self._note(job, AttemptNote(ran_on=started))
        return self._finish(gen, job, cancelled)

    def _start(self, gen: Any, job: Job, asked: dict[str, float], cancelled: Callable[[], bool]) -> RanOn | Outcome:
        """Wait for the handler to start (no time limit: a job may wait for resources), saying why it waits."""
        said: list[str] = []
        next_note = time.monotonic() + WAITING_NOTE_S

        def explain(now: float) -> None:
            nonlocal next_note
            if now >= next_note:
                next_note = now + WAITING_RECHECK_S
                if (reason := why_waiting(asked)) not in said[-1:]:
                    self._note(job, AttemptNote(waiting=reason))
                    said.append(reason)

        stopped = self._wait(gen, job, cancelled, None, explain)
        if stopped is not None:
            return stopped
        first = self._collect(next(gen))
        return first.result if first.error is None and isinstance(first.result, RanOn) else first

    def _finish(self, gen: Any, job: Job, cancelled: Callable[[], bool]) -> Outcome:
        """Wait for the handler's result, within the job's timeout from its start."""
        stopped = self._wait(gen, job, cancelled, time.monotonic() + job.timeout_s, lambda now: None)
        return stopped if stopped is not None else self._collect(next(gen))

    @staticmethod
    def _wait(
        gen: Any, job: Job, cancelled: Callable[[], bool], deadline: float | None, idle: Callable[[float], None]
    ) -> Outcome | None:
        """Until the task's next item is ready (None), or its deadline passes or the job is cancelled: then
        the task is killed and the Outcome says which."""
        next_check = time.monotonic() + CANCEL_CHECK_S
        while True:
            ready, _ = ray.wait([gen], timeout=WAIT_S)
            if ready:
                return None
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                ray.cancel(gen, force=True)
                return Outcome(error=f"timed out after {job.timeout_s:g}s (timeout_s)", timed_out=True)
            if now >= next_check:
                next_check = now + CANCEL_CHECK_S
                if cancelled():
                    ray.cancel(gen, force=True)
                    return Outcome(cancelled=True)
            idle(now)

    @staticmethod
    def _collect(ref: ray.ObjectRef) -> Outcome:
        try:
            return Outcome(result=ray.get(ref))
        except RayTaskError as e:  # the handler raised: judge the original exception
            return outcome_of_error(e.cause if isinstance(e.cause, BaseException) else e)
        except RayError as e:  # the worker died under the handler (e.g. out of memory)
            return Outcome(error=f"worker failed: {describe(e)}")
