"""Resources per job type: a submission's merge with the type's defaults, the limits, and why a run waits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from actors import runner
from contracts import JobSubmission, Resources
from observatory.errors import InvalidSubmission
from observatory.jobs import default_registry


def asked(**fields: object) -> Resources:
    return Resources.model_validate(fields)


def test_a_submission_replaces_only_the_fields_it_gives():
    registry = default_registry()

    assert registry.resources("primes", None, ["body"]) == Resources(cpus=1)
    assert registry.resources("primes", asked(memory_mib=256), ["body"]) == Resources(cpus=1, memory_mib=256)
    assert registry.resources("sleep", asked(cpus=0.5), ["body"]) == Resources(cpus=0.5)
    assert registry.resources("primes", asked(cpus=0), ["body"]) == Resources()


def test_asking_beyond_the_types_limits_names_each_field():
    with pytest.raises(InvalidSubmission) as e:
        default_registry().resources("primes", asked(cpus=5, gpus=1, custom={"ssd": 1}), ["body", "jobs", 3])

    where = [loc for loc, _ in e.value.details]
    assert where == [
        ["body", "jobs", 3, "resources", "cpus"],
        ["body", "jobs", 3, "resources", "gpus"],
        ["body", "jobs", 3, "resources", "custom", "ssd"],
    ]


def test_a_type_that_runs_inside_the_processor_takes_no_resources():
    registry = default_registry()

    assert registry.resources("noop", None, ["body"]) is None
    with pytest.raises(InvalidSubmission) as e:
        registry.resources("noop", asked(cpus=1), ["body"])
    assert e.value.details[0][0] == ["body", "resources"]


@pytest.mark.parametrize("name", ["CPU", "memory", "9lives", "a b", ""])
def test_custom_resource_names_are_checked(name):
    with pytest.raises(ValidationError):
        JobSubmission.model_validate({"type": "primes", "resources": {"custom": {name: 1}}})


def test_the_task_asks_ray_for_the_amounts_and_the_placement():
    amounts = runner.ray_resources(Resources(cpus=2, memory_mib=64, custom={"ssd": 1}), {"observatory-worker": 0.01})

    assert amounts == {"CPU": 2, "memory": 64 * 1024 * 1024, "ssd": 1, "observatory-worker": 0.01}
    options = runner.task_options(amounts)
    assert options == {
        "num_cpus": 2,
        "num_gpus": 0,
        "memory": 64 * 1024 * 1024,
        "resources": {"ssd": 1, "observatory-worker": 0.01},
        "scheduling_strategy": "SPREAD",
    }


def test_a_waiting_run_says_whether_any_node_could_ever_take_it(monkeypatch):
    nodes = [{"CPU": 2.0, "memory": 4e9}, {"CPU": 4.0, "memory": 1e9}]
    monkeypatch.setattr(runner._NODES, "totals", lambda: nodes)

    assert runner.why_waiting({"CPU": 4}).startswith("waiting for CPU 4 to be free")
    assert runner.why_waiting({"CPU": 4, "memory": 2e9}).startswith("unschedulable: no node of the cluster offers")
    assert "GPU 1" in runner.why_waiting({"GPU": 1})
