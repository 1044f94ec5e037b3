"""The RayService's serveConfigV2 on a real two-node Ray cluster, deployed as the KubeRay operator deploys it.

The head has no CPUs for Ray (as the head group); one worker node offers the worker group's CPUs and its
custom resource. The config is taken from the rendered manifest and PUT to the dashboard's REST API. The only
change: the proxy binds 127.0.0.1 instead of 0.0.0.0, since only loopback may be used here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from ray.util.state import list_actors, list_nodes, list_tasks

from contracts import JobStatus
from kuberay.client import load_manifests
from kuberay.profile import WORKER_RESOURCE
from observatory import backends
from observatory.settings import Settings
from tests.cluster import DASHBOARD, two_node_cluster
from tests.helpers import FAST_RETRIES, assert_backends, final_jobs, scratch, stats_settle, wait_for
from tests.test_e2e import expected, submit_workload, workload

pytestmark = pytest.mark.e2e


def rendered_rayservice() -> dict[str, Any]:
    (rs,) = [d for d in load_manifests() if d["kind"] == "RayService"]
    return rs


def rendered_serve_config() -> dict[str, Any]:
    return yaml.safe_load(rendered_rayservice()["spec"]["serveConfigV2"])


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[tuple[httpx.Client, backends.Backends]]:
    rs = rendered_rayservice()
    config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert config["http_options"]["host"] == "0.0.0.0"
    config["http_options"]["host"] = "127.0.0.1"
    (group,) = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    resources = json.loads(json.loads(group["rayStartParams"]["resources"]))
    cpus = int(group["rayStartParams"]["num-cpus"])
    s = Settings(OBSERVATORY_NAMESPACE=scratch(f"{settings.namespace}_kuberay"))
    truth = backends.build(s)
    truth.setup()
    env = {"OBSERVATORY_NAMESPACE": s.namespace, **FAST_RETRIES}
    try:
        with two_node_cluster(env, config, resources, cpus) as url, httpx.Client(base_url=url, timeout=60) as api:
            assert_backends(api, real=True)
            yield api, truth
    finally:
        truth.close()


def test_every_job_type_completes_and_the_stats_are_exact(stack):
    api, truth = stack
    ids = submit_workload(api, workload(), singles=20)
    assert {j["type"] for j, _ in ids} == {"hash", "primes", "sleep", "monte_carlo_pi", "noop"}

    final = wait_for(lambda: final_jobs(api, [i for _, i in ids]), "all jobs final")
    for job, job_id in ids:
        status, result = expected(job)
        assert final[job_id]["status"] == status, (job, final[job_id])
        if status is JobStatus.COMPLETED and job["type"] != "monte_carlo_pi":
            assert final[job_id]["result"] == result
    stats = stats_settle(api, truth, "the cached stats to equal the job store")
    assert stats["total_jobs"] == len(ids)


def test_the_pipeline_and_the_handlers_run_on_the_worker_node(stack):
    nodes = list_nodes(address=DASHBOARD, detail=True)
    (worker,) = [n for n in nodes if WORKER_RESOURCE in (n.resources_total or {})]
    (head,) = [n for n in nodes if n.is_head_node]
    assert head.resources_total.get("CPU", 0) == 0
    actors = list_actors(address=DASHBOARD, filters=[("state", "=", "ALIVE")], detail=True, limit=1000)
    pipeline = [a for a in actors if a.class_name in ("ProcessorActor", "AggregatorActor")]
    args = next(a for a in rendered_serve_config()["applications"] if a["name"] == "workers")["args"]
    processors = sum(a.class_name == "ProcessorActor" for a in pipeline)  # the backlog may have added some
    assert sum(a.class_name == "AggregatorActor" for a in pipeline) == 1
    assert args["min_processors"] <= processors <= args["max_processors"]
    assert {a.node_id for a in pipeline} == {worker.node_id}
    replicas = [a for a in actors if a.class_name.startswith("ServeReplica:")]
    assert replicas and {a.node_id for a in replicas} == {head.node_id}  # the Serve apps stay on the head
    handlers = list_tasks(
        address=DASHBOARD, filters=[("func_or_class_name", "=", "run_handler")], detail=True, limit=1000
    )
    assert handlers and {t.node_id for t in handlers if t.node_id} == {worker.node_id}

    # Serve runs a proxy on the controller's node and on every node that hosts a replica (a proxy on a node
    # without replicas is drained; KubeRay then leaves that pod out of the Serve service). Serve replaces a
    # proxy that fails its health check (a busy 2-core machine can make one miss it), so this waits for the
    # condition rather than reading a single moment.
    def proxies_where_serve_needs_them() -> bool:
        alive = list_actors(address=DASHBOARD, filters=[("state", "=", "ALIVE")], detail=True, limit=1000)
        proxies = {a.node_id for a in alive if a.class_name == "ProxyActor"}
        replicas = {a.node_id for a in alive if a.class_name.startswith("ServeReplica:")}
        seen.append((sorted(proxies), sorted(replicas)))
        return bool(replicas) and proxies == replicas | {head.node_id}

    seen: list[tuple[list[str], list[str]]] = []
    try:
        wait_for(proxies_where_serve_needs_them, "a proxy on the head and on each node with replicas", 90)
    except AssertionError as e:
        raise AssertionError(f"{e}; (proxy nodes, replica nodes) last seen: {seen[-1]}") from None
