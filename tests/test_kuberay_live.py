"""The manifests and kuberay/client.py against a real kube-apiserver and the real KubeRay operator.

kwok stands in for the kubelet (pods on its node turn Running and Ready without containers), and there is
no scheduler, so the only test overlay is `nodeName` on the Ray pod templates. Everything else is applied as
`observatory cluster up` applies it.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from kuberay.client import ClusterClient, ManifestRejected, load_manifests, pod_templates
from kuberay.profile import PROFILE, WORKER_RESOURCE
from kuberay.render import URL_KEYS
from kuberay.secret import secret
from tests.control_plane import ControlPlane, control_plane
from tests.helpers import wait_for

NS = PROFILE.namespace


def on_kwok(docs: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(docs)
    for doc in out:
        if doc["kind"] == "RayService":
            for template in pod_templates(doc):
                template["spec"]["nodeName"] = node
    return out


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with control_plane() as p:
        yield p


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> ClusterClient:
    return ClusterClient(plane.api(), NS)


@pytest.fixture(scope="module")
def applied(client: ClusterClient, plane: ControlPlane) -> dict[str, Any]:
    assert client.create_if_absent(secret()) is True
    assert client.create_if_absent(secret()) is False  # the passwords the databases use are kept
    done = client.apply(on_kwok(load_manifests(), plane.node))
    assert {(a.kind, a.name) for a in done} >= {("RayService", "observatory"), ("StatefulSet", "postgres")}
    progress: list[list[str]] = []
    status = client.wait_ready(
        timeout_s=120,
        on_progress=lambda s: progress.append(s.lines()),
        until=lambda s: s.pending.cluster_state == "ready" or s.active.cluster_state == "ready",
    )
    return {"status": status, "progress": progress}


def pods(plane: ControlPlane, selector: str) -> list[k8s.V1Pod]:
    return k8s.CoreV1Api(plane.api()).list_namespaced_pod(NS, label_selector=selector).items


def test_the_operator_turns_our_rayservice_into_a_ready_raycluster_owned_by_it(client, applied):
    status = applied["status"]
    side = status.pending if status.pending.cluster else status.active
    cluster = client.get("ray.io/v1", "RayCluster", side.cluster, NS)
    assert cluster is not None and cluster["status"]["state"] == "ready"
    (owner,) = cluster["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("RayService", "observatory")
    # our client reported the way there, not only the end: the operator's reason, then the cluster's state
    assert any(lines[0].startswith("RayService observatory: not ready (Initializing") for lines in applied["progress"])
    assert any(f"cluster {side.cluster}: ready" in "\n".join(lines) for lines in applied["progress"])


def test_head_and_worker_pods_carry_our_image_secrets_resources_and_ports(plane, applied):
    head = wait_for(lambda: pods(plane, "ray.io/node-type=head"), "head pod", 60)
    workers = wait_for(lambda: pods(plane, "ray.io/node-type=worker"), "worker pod", 60)
    assert len(head) == 1 and len(workers) == PROFILE.min_workers
    for pod, size, component in [(head[0], PROFILE.head, "ray-head"), (workers[0], PROFILE.worker, "ray-worker")]:
        assert pod.status.phase == "Running"
        assert pod.metadata.labels["app.kubernetes.io/component"] == component
        (ray,) = [c for c in pod.spec.containers if c.name == component]
        assert ray.image == PROFILE.image
        refs = {e.name: e.value_from.secret_key_ref for e in ray.env if e.value_from and e.value_from.secret_key_ref}
        assert set(refs) >= set(URL_KEYS) and {r.name for r in refs.values()} == {PROFILE.secret}
        assert ray.resources.limits == {"cpu": size.cpu_limit, "memory": size.memory}
        assert ray.resources.requests == {"cpu": size.cpu_request, "memory": size.memory}
        assert pod.spec.security_context.run_as_non_root is True
    head_ports = {p.container_port for p in head[0].spec.containers[0].ports}
    assert {8000, 8265, 6379, 8080} <= head_ports
    # the operator starts the head without CPUs for Ray, the workers with our custom resource
    head_args = shlex.split(" ".join(head[0].spec.containers[0].args or head[0].spec.containers[0].command))
    worker_args = shlex.split(" ".join(workers[0].spec.containers[0].args or workers[0].spec.containers[0].command))
    assert "--num-cpus=0" in head_args
    (resources,) = [a.split("=", 1)[1] for a in worker_args if a.startswith("--resources=")]
    assert json.loads(resources) == {WORKER_RESOURCE: PROFILE.worker_resource_units}


def test_status_reports_exactly_what_the_api_shows(client, applied):
    raw = client.get("ray.io/v1", "RayService", "observatory", NS)
    (ready,) = [c for c in raw["status"]["conditions"] if c["type"] == "Ready"]
    status = client.status()
    assert status.ready is False and ready["status"] == "False"
    assert status.condition("Ready").reason == ready["reason"] == "Initializing"
    assert status.reason.startswith("Initializing")
    cluster = raw["status"].get("pendingServiceStatus", {}).get("rayClusterName") or raw["status"][
        "activeServiceStatus"
    ].get("rayClusterName")
    assert cluster in {status.pending.cluster, status.active.cluster}
    assert {w.name for w in status.backing} >= {"rabbitmq", "postgres", "mongodb", "redis", "grafana"}
    with pytest.raises(TimeoutError, match=r"Initializing.*still pending: .*no Serve application reported on"):
        client.wait_ready(timeout_s=2)


def test_an_invalid_rayservice_is_refused_with_the_field_named_and_nothing_stored(client, applied):
    (rs,) = [d for d in load_manifests() if d["kind"] == "RayService"]
    mistyped = copy.deepcopy(rs)
    mistyped["metadata"]["name"] = "broken"
    mistyped["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "three"
    with pytest.raises(ManifestRejected) as e:
        client.apply([mistyped])
    assert e.value.code == 422 and any("replicas" in f for f in e.value.fields), e.value
    unknown = copy.deepcopy(rs)
    unknown["metadata"]["name"] = "broken"
    unknown["spec"]["rayClusterConfig"]["enableInTreeAutoScaling"] = True  # misspelt
    with pytest.raises(ManifestRejected) as e:
        client.apply([unknown])
    assert e.value.code == 400 and "enableInTreeAutoScaling" in e.value.message
    assert client.get("ray.io/v1", "RayService", "broken", NS) is None


def test_applying_again_changes_nothing(client, plane, applied):
    before = client.get("ray.io/v1", "RayService", "observatory", NS)["metadata"]["generation"]
    client.apply(on_kwok(load_manifests(), plane.node))
    assert client.get("ray.io/v1", "RayService", "observatory", NS)["metadata"]["generation"] == before


def observatory(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observatory.cli", "cluster", *args, "--kubeconfig", str(plane.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )


def test_cli_status_then_down_cascades_to_the_raycluster_and_its_pods(client, plane, applied):
    st = observatory(plane, "status")
    assert st.returncode == 1, st.stderr  # not Ready: exit code says so
    assert "RayService observatory: not ready (Initializing" in st.stdout and "statefulset postgres" in st.stdout
    assert pods(plane, "ray.io/is-ray-node=yes")
    down = observatory(plane, "down", "--timeout", "120")
    assert down.returncode == 0, down.stdout + down.stderr
    assert client.list_objects("ray.io/v1", "RayCluster") == []  # owned by the RayService: collected
    assert pods(plane, "ray.io/is-ray-node=yes") == []
    assert client.get("v1", "Secret", PROFILE.secret, NS) is not None  # kept for the next `up`
    assert client.get("apps/v1", "StatefulSet", "postgres", NS) is None
    st = observatory(plane, "status")
    assert st.returncode == 1 and "not found" in st.stdout
