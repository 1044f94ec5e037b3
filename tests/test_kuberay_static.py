"""The KubeRay manifests, checked offline: Kubernetes' own schemas (strict), the KubeRay v1.7.0 CRD schemas,
Ray Serve's schema for serveConfigV2, and the checked-in files equal to what `kuberay.render` makes."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml
from ray.serve.schema import ServeDeploySchema

from kuberay import render
from kuberay.client import MANIFESTS, load_manifests, pod_templates
from kuberay.profile import PROFILE, RAY_VERSION, WORKER_RESOURCE
from kuberay.secret import credentials, secret

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "tests" / "data" / "kuberay-crds-v1.7.0"
K8S_VERSION = "1.34.0"


def crd_schema(kind: str) -> dict[str, Any]:
    plural = {"RayService": "rayservices", "RayCluster": "rayclusters"}[kind]
    crd = yaml.load(gzip.decompress((CRDS / f"ray.io_{plural}.yaml.gz").read_bytes()), Loader=yaml.CSafeLoader)
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def unknown_fields(doc: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would prune (or refuse under strict validation): not in the schema's properties."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(doc, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in doc.items():
            if props is not None and key in props:
                found += unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{path}.{key}")
            elif props is not None:
                found.append(f"{path}.{key}")
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(doc):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def docs() -> list[dict[str, Any]]:
    return load_manifests()


def rayservice() -> dict[str, Any]:
    (rs,) = [d for d in docs() if d["kind"] == "RayService"]
    return rs


def builtin_kinds() -> list[dict[str, Any]]:
    return [d for d in docs() if d["apiVersion"] != "ray.io/v1"]


@pytest.mark.parametrize("doc", builtin_kinds(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_builtin_manifest_passes_kubernetes_validate_strictly(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_validate_catches_what_it_should():
    (sts,) = [d for d in docs() if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "postgres"]
    broken = json.loads(json.dumps(sts))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_rayservice_passes_the_kuberay_crd_schema_with_no_unknown_field():
    rs, schema = rayservice(), crd_schema("RayService")
    jsonschema.validate(rs, schema)
    assert unknown_fields(rs, schema) == []
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "x"},
        "spec": rs["spec"]["rayClusterConfig"],
    }
    jsonschema.validate(cluster, crd_schema("RayCluster"))
    assert unknown_fields(cluster, crd_schema("RayCluster")) == []


def test_the_crd_check_catches_a_misspelt_and_a_mistyped_field():
    rs, schema = rayservice(), crd_schema("RayService")
    rs["spec"]["rayClusterConfig"]["enableInTreeAutoScaling"] = True
    assert unknown_fields(rs, schema) == [".spec.rayClusterConfig.enableInTreeAutoScaling"]
    rs = rayservice()
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "three"
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas|three"):
        jsonschema.validate(rs, schema)


def test_serve_config_v2_is_a_valid_serve_deploy_config_derived_from_the_local_one():
    rs = rayservice()
    config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)
    local = yaml.safe_load((ROOT / "serve_app" / "config.yaml").read_text())
    assert config["http_options"]["host"] == "0.0.0.0" and local["http_options"]["host"] == "127.0.0.1"
    assert [a["name"] for a in config["applications"]] == [a["name"] for a in local["applications"]]
    (workers,) = [a for a in config["applications"] if a["name"] == "workers"]
    assert workers["args"]["placement"] == {WORKER_RESOURCE: PROFILE.placement_units}
    # Everything else is the local file's: one source.
    for a, b in zip(config["applications"], local["applications"], strict=True):
        assert a["import_path"] == b["import_path"] and a["deployments"] == b["deployments"]


def test_the_worker_group_offers_the_resource_that_the_pipeline_asks_for():
    spec = rayservice()["spec"]["rayClusterConfig"]
    (group,) = spec["workerGroupSpecs"]
    offered = json.loads(json.loads(group["rayStartParams"]["resources"]))
    assert offered[WORKER_RESOURCE] >= 1
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no jobs on the head
    assert spec["enableInTreeAutoscaling"] is True and group["minReplicas"] < group["maxReplicas"]
    assert spec["rayVersion"] == RAY_VERSION


def test_the_checked_in_files_are_the_rendered_ones():
    for path, text in render.rendered().items():
        assert path.read_text() == text, f"{path} is stale: run `python -m kuberay.render`"


def test_the_render_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    stale = tmp_path / "rayservice.yaml"
    stale.write_text("# old\n")
    original = render.rendered

    def with_a_stale_file(profile=PROFILE):
        files = original(profile)
        return {**files, stale: files[render.MANIFESTS / "rayservice.yaml"]}

    monkeypatch.setattr(render, "rendered", with_a_stale_file)
    with pytest.raises(typer.Exit) as e:
        render.main(check=True)
    assert e.value.exit_code == 1


def test_the_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}


def test_no_credential_is_in_plain_text():
    names = re.compile(r"PASS|PASSWORD|_URL$|_DSN$|SECRET|TOKEN")
    for doc in docs():
        assert doc["kind"] != "Secret"
        for container in _containers(doc):
            for env in container.get("env", []):
                if names.search(env["name"]) and env["name"] not in (  # in-cluster addresses, no credential
                    "OBSERVATORY_PROMETHEUS_URL",
                    "OBSERVATORY_ALERTMANAGER_URL",
                    "OBSERVATORY_GRAFANA_URL",
                    "OBSERVATORY_RABBITMQ_MANAGEMENT_URL",
                    "OBSERVATORY_RAY_DASHBOARD_URL",
                ):
                    assert "valueFrom" in env and "value" not in env, f"{doc['metadata']['name']}: {env['name']}"
    every = "\n".join(p.read_text() for p in MANIFESTS.glob("*.yaml"))
    assert "observatory:observatory@" not in every and "POSTGRES_PASSWORD: " not in every


def test_every_secret_key_the_manifests_use_is_generated():
    keys = set(credentials())
    used = set()
    for doc in docs():
        for container in _containers(doc):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == PROFILE.secret
                    used.add(ref["key"])
    assert used and used <= keys
    kubernetes_validate.validate(secret(), K8S_VERSION, strict=True)
    assert credentials()["POSTGRES_PASSWORD"] != credentials()["POSTGRES_PASSWORD"]  # random each time


# readiness: can it serve? (a real request); liveness: is the process there? (cheap, late, never a dependency)
READINESS = {
    "rabbitmq": ("exec", "check_port_connectivity"),
    "postgres": ("exec", "pg_isready"),
    "mongodb": ("exec", "ping"),
    "redis": ("exec", "PONG"),
    "prometheus": ("httpGet", "/-/ready"),
    "alertmanager": ("httpGet", "/-/ready"),
    "grafana": ("httpGet", "/api/health"),
}
LIVENESS = {
    "rabbitmq": ("exec", "ping"),
    "postgres": ("tcpSocket", ""),
    "mongodb": ("tcpSocket", ""),
    "redis": ("tcpSocket", ""),
    "prometheus": ("httpGet", "/-/healthy"),
    "alertmanager": ("httpGet", "/-/healthy"),
    "grafana": ("tcpSocket", ""),
}


def _probe(probe: dict[str, Any]) -> tuple[str, str]:
    (kind,) = [k for k in ("exec", "httpGet", "tcpSocket") if k in probe]
    detail = " ".join(probe["exec"]["command"]) if kind == "exec" else probe[kind].get("path", "")
    return kind, detail


def test_probes_are_the_right_way_round():
    seen = set()
    for doc in docs():
        if doc["kind"] not in ("StatefulSet", "Deployment"):
            continue  # KubeRay adds the Ray pods' probes itself
        for container in _containers(doc):
            name = container["name"]
            seen.add(name)
            kind, detail = _probe(container["readinessProbe"])
            assert (kind, READINESS[name][1] in detail) == (READINESS[name][0], True), (name, kind, detail)
            kind, detail = _probe(container["livenessProbe"])
            assert kind == LIVENESS[name][0] and LIVENESS[name][1] in detail, (name, kind, detail)
            assert container["livenessProbe"].get("initialDelaySeconds", 0) >= 15
            assert "requests" in container["resources"] and "limits" in container["resources"]
    assert seen == set(READINESS)


def test_every_file_the_image_copies_exists_and_is_sent_to_docker():
    dockerfile = (ROOT / "kuberay" / "Dockerfile").read_text()
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            sources = [a for a in line.split()[1:-1] if not a.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


def test_stateful_backends_keep_their_data_on_persistent_volumes():
    stateful = {d["metadata"]["name"]: d for d in docs() if d["kind"] == "StatefulSet"}
    assert {"rabbitmq", "postgres", "mongodb", "redis", "prometheus"} <= set(stateful)
    for sts in stateful.values():
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert claim["metadata"]["name"] in {m["name"] for m in mounts}


def test_kind_maps_every_ui_node_port_to_localhost():
    kind = yaml.safe_load((ROOT / "kuberay" / "kind.yaml").read_text())
    mapped = {m["containerPort"]: m["hostPort"] for m in kind["nodes"][0]["extraPortMappings"]}
    node_ports = {
        p["nodePort"] for d in docs() if d["kind"] == "Service" for p in d["spec"].get("ports", []) if "nodePort" in p
    }
    node_ports |= {p["nodePort"] for p in rayservice()["spec"]["serveService"]["spec"]["ports"]}
    assert node_ports == set(mapped) and mapped[PROFILE.node_ports["serve"]] == 8000


def test_the_image_is_the_official_ray_image_of_the_pinned_versions():
    dockerfile = (ROOT / "kuberay" / "Dockerfile").read_text()
    assert f"FROM {render.image()}\n" in dockerfile and "USER 1000" in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"ray[serve]=={RAY_VERSION}"' in pyproject
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*"  # only what the Dockerfile copies is sent: no .venv, no data


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] in ("StatefulSet", "Deployment"):
        return doc["spec"]["template"]["spec"]["containers"]
    if doc["kind"] == "RayService":
        return [c for t in pod_templates(doc) for c in t["spec"]["containers"]]
    return []


def test_the_dashboard_links_open_where_kind_maps_each_ui_and_are_checked_at_its_service():
    head = rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in head["env"]}
    public = json.loads(env["OBSERVATORY_PUBLIC_URLS"])
    assert set(public) == {"Ray dashboard", "Prometheus", "Alertmanager", "Grafana", "RabbitMQ"}
    kind = yaml.safe_load((ROOT / "kuberay" / "kind.yaml").read_text())
    host_ports = {m["hostPort"] for m in kind["nodes"][0]["extraPortMappings"]}
    assert all(
        url.startswith("http://localhost:") and int(url.rsplit(":", 1)[1]) in host_ports for url in public.values()
    )
    checked = [
        env[f"OBSERVATORY_{n}_URL"]
        for n in ("PROMETHEUS", "ALERTMANAGER", "GRAFANA", "RABBITMQ_MANAGEMENT", "RAY_DASHBOARD")
    ]
    services = {d["metadata"]["name"] for d in docs() if d["kind"] == "Service"}
    assert all(httpx.URL(url).host in services for url in checked), checked
