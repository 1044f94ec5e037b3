"""The supervisor on a real local Ray instance: an actor slow to start is left to start (not taken for dead and
re-created over and over, as a busy node's new processors were), one whose creation fails or never ends is."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.supervisor import ActorSpec, Supervisor
from tests.helpers import wait_for


@ray.remote(num_cpus=0)
class Member:
    def __init__(self, name: str, start_s: float, fail: bool = False) -> None:
        time.sleep(start_s)  # a worker process to start, connections to open
        if fail:
            raise RuntimeError("the broker refused the connection")
        self.name = name

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "handled": 0}

    def drain(self) -> int:
        return 0

    def stop(self) -> None:
        pass


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def spec(name: str, start_s: float, fail: bool = False) -> ActorSpec:
    return ActorSpec(name, lambda: Member.remote(name, start_s, fail))


def states_until(supervisor: Supervisor, name: str, state: str, timeout_s: float = 60) -> list[str]:
    seen: list[str] = []

    def reached() -> bool:
        seen.append(supervisor.reconcile()[name]["state"])
        return seen[-1] == state

    wait_for(reached, f"{name} {state}", timeout_s)
    return seen


def test_an_actor_slower_to_start_than_the_ping_limit_starts_once_and_then_answers():
    supervisor = Supervisor([spec("slow", start_s=5)], ping_timeout_s=2)
    try:
        seen = states_until(supervisor, "slow", "alive")
        assert set(seen[:-1]) == {"starting"} and len(seen) > 2, seen
        assert supervisor.snapshot()[1]["slow"]["restarts"] == 0
        assert supervisor.snapshot()[1]["slow"]["last_seen"] is not None
    finally:
        supervisor.stop()


def test_an_actor_whose_creation_fails_is_created_again_and_shows_restarted():
    supervisor = Supervisor([spec("broken", start_s=0, fail=True)], ping_timeout_s=0.5)
    try:
        wait_for(lambda: supervisor.reconcile()["broken"]["restarts"] >= 2, "two re-creations", 60)
        assert supervisor.snapshot()[1]["broken"]["state"] == "restarted"
    finally:
        supervisor.stop()


def test_an_actor_past_the_start_limit_is_created_again_and_one_still_starting_stops_at_once():
    supervisor = Supervisor([spec("stuck", start_s=600)], ping_timeout_s=0.5, start_limit_s=1)
    try:
        wait_for(lambda: supervisor.reconcile()["stuck"]["restarts"] >= 1, "a re-creation", 60)
        assert supervisor.snapshot()[1]["stuck"]["state"] == "restarted"
    finally:
        began = time.monotonic()
        supervisor.stop()
    assert time.monotonic() - began < 5  # not the 15 s a started actor gets to settle what it holds


def test_an_actor_scaled_away_before_it_started_is_removed_not_drained():
    supervisor = Supervisor([spec("late", start_s=600), spec("kept", start_s=0)], ping_timeout_s=2)
    try:
        supervisor.reconcile()
        supervisor.resize([spec("kept", start_s=0)])
        assert supervisor.names() == {"kept"} and supervisor.draining == 0
        assert set(supervisor.reconcile()) == {"kept"}
    finally:
        supervisor.stop()
