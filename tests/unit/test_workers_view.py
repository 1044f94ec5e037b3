"""The workers view without Ray: the supervisor's passes (with a fake `ray.get` and `ray.wait`), the Workers
deployment's status, and the view built from `ray.nodes()` entries."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ray.exceptions import RayActorError

from actors import supervisor as supervisor_module
from actors.supervisor import ActorSpec, Supervisor
from contracts import WorkerKind, WorkersStatus, WorkerState, WorkersView
from serve_app.workers import workers_status

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
HEAD, OTHER = "a" * 56, "b" * 56


class FakeActor:
    """A handle whose `info.remote()` is its own answer; `gone` makes `ray.get` raise as for a dead actor.
    It has started at once: `__ray_ready__.remote()` is ready."""

    def __init__(self, name: str, pid: int) -> None:
        self.gone = False
        self.answer = {"name": name, "pid": pid, "node_id": HEAD, "node_ip": "127.0.0.1", "in_flight": 1, "handled": 7}
        self.info = self
        self.__ray_ready__ = Started(self)

    def remote(self) -> FakeActor:
        return self


class Started:
    def __init__(self, actor: FakeActor) -> None:
        self.actor = actor
        self.gone = False
        self.answer = True

    def remote(self) -> Started:
        return self


class FakeRay:
    def __init__(self) -> None:
        self.killed: list[FakeActor] = []
        self.hold: threading.Event | None = None  # set: every ray.get waits until it is released
        self.waiting = threading.Event()

    def wait(self, refs: list[FakeActor | Started], timeout: float) -> tuple[list[Any], list[Any]]:
        return list(refs), []

    def get(self, ref: FakeActor | Started, timeout: float) -> Any:
        if self.hold is not None:
            self.waiting.set()
            self.hold.wait()
        if ref.gone:
            raise RayActorError()
        return dict(ref.answer) if isinstance(ref, FakeActor) else ref.answer

    def kill(self, handle: FakeActor, no_restart: bool) -> None:
        self.killed.append(handle)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=2)
        return self.now


@pytest.fixture
def ray_(monkeypatch) -> FakeRay:
    fake = FakeRay()
    monkeypatch.setattr(supervisor_module.ray, "get", fake.get)
    monkeypatch.setattr(supervisor_module.ray, "kill", fake.kill)
    monkeypatch.setattr(supervisor_module.ray, "wait", fake.wait)
    return fake


def supervised() -> tuple[Supervisor, list[FakeActor], Clock]:
    made: list[FakeActor] = []

    def spec(name: str, kind: str) -> ActorSpec:
        def create() -> FakeActor:
            made.append(FakeActor(name, 100 + len(made)))
            return made[-1]

        return ActorSpec(name, create, kind)  # type: ignore[arg-type]

    clock = Clock()
    return Supervisor([spec("processor-0", "processor"), spec("aggregator-0", "aggregator")], clock), made, clock


def test_new_actors_are_starting_then_alive_with_their_node_and_when_they_answered(ray_):
    sup, made, clock = supervised()

    first = sup.reconcile()
    second = sup.reconcile()

    assert first["processor-0"] == {
        "name": "processor-0",
        "state": "starting",
        "last_seen": None,
        "kind": "processor",
        "restarts": 0,
    }
    p = second["processor-0"]
    assert (p["state"], p["node_id"], p["pid"], p["handled"], p["kind"]) == (
        "alive",
        HEAD,
        made[0].answer["pid"],
        7,
        "processor",
    )
    assert p["last_seen"] == T0 + timedelta(seconds=4) and second["aggregator-0"]["kind"] == "aggregator"
    assert sup.snapshot()[0] == clock.now  # the end of the last pass


def test_an_actor_that_stops_answering_is_replaced_and_keeps_when_it_last_answered(ray_):
    sup, made, _ = supervised()
    sup.reconcile()
    seen = sup.reconcile()["processor-0"]["last_seen"]
    made[0].gone = True

    after = sup.reconcile()["processor-0"]

    assert after == {"name": "processor-0", "state": "restarted", "last_seen": seen, "kind": "processor", "restarts": 1}
    assert ray_.killed == [made[0]] and len(made) == 3  # a fourth handle: the replacement
    assert sup.reconcile()["processor-0"]["state"] == "alive"
    assert sup.snapshot()[1]["processor-0"]["restarts"] == 1


def test_a_reader_gets_the_last_whole_pass_at_once_while_a_pass_waits_on_an_actor(ray_):
    sup, _, _ = supervised()
    sup.reconcile()
    before = sup.reconcile()
    ray_.hold = threading.Event()
    passing = threading.Thread(target=sup.reconcile)
    passing.start()
    assert ray_.waiting.wait(5)

    during = sup.snapshot()[1]  # does not wait for the pass stuck in ray.get

    ray_.hold.set()
    passing.join(5)
    assert during == before
    during["processor-0"]["state"] = "changed by the reader"
    assert sup.snapshot()[1]["processor-0"]["state"] == "alive"  # a copy


def entry(name: str, kind: str, state: str, node: str | None = HEAD) -> dict[str, Any]:
    seen = T0 if state == "alive" else None
    return {"name": name, "kind": kind, "state": state, "node_id": node, "restarts": 0, "last_seen": seen}


def test_status_counts_alive_processors_against_the_desired_number():
    infos = {
        "processor-0": {**entry("processor-0", "processor", "alive"), "in_flight": 2, "handled": 9, "stored": 1},
        "processor-1": entry("processor-1", "processor", "restarted", None),
        "aggregator-0": entry("aggregator-0", "aggregator", "alive"),
    }

    status = workers_status(T0, infos, desired=2, bounds=(2, 2))

    assert (status.desired, status.actual, status.min, status.max, status.aggregators) == (2, 1, 2, 2, 1)
    assert [(a.name, a.kind, a.state) for a in status.actors] == [
        ("processor-0", WorkerKind.PROCESSOR, WorkerState.ALIVE),
        ("processor-1", WorkerKind.PROCESSOR, WorkerState.RESTARTED),
        ("aggregator-0", WorkerKind.AGGREGATOR, WorkerState.ALIVE),
    ]
    assert status.actors[0].handled == 9 and status.actors[0].in_flight == 2
    assert WorkersStatus.model_validate(status.model_dump(mode="json")) == status  # JSON through the handle


def test_view_lists_the_head_first_with_its_resources_and_the_actors_on_each_node():
    status = workers_status(
        T0,
        {
            "processor-0": entry("processor-0", "processor", "alive", OTHER),
            "aggregator-0": entry("aggregator-0", "aggregator", "alive", HEAD),
            "processor-1": entry("processor-1", "processor", "starting", None),
        },
        desired=2,
        bounds=(2, 2),
    )
    nodes = [
        {
            "NodeID": OTHER,
            "Alive": True,
            "NodeManagerAddress": "10.0.0.2",
            "Resources": {"CPU": 2.0, "memory": 1e9, "observatory-worker": 1.0, "node:10.0.0.2": 1.0},
        },
        {"NodeID": "c" * 56, "Alive": False, "NodeManagerAddress": "10.0.0.3", "Resources": {}},
        {
            "NodeID": HEAD,
            "Alive": True,
            "NodeManagerAddress": "10.0.0.1",
            "Resources": {"CPU": 0.0, "node:__internal_head__": 1.0, "node:10.0.0.1": 1.0},
        },
    ]

    view = WorkersView.from_ray(nodes, status)

    assert [(n.address, n.is_head, n.alive, n.actors) for n in view.nodes] == [
        ("10.0.0.1", True, True, ["aggregator-0"]),
        ("10.0.0.2", False, True, ["processor-0"]),
        ("10.0.0.3", False, False, []),
    ]
    assert view.nodes[1].resources == {"CPU": 2.0, "memory": 1e9, "observatory-worker": 1.0}
    assert view.workers.actual == 1
