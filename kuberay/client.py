"""A thin client on the official `kubernetes` package: apply the manifests, read and wait for the RayService,
delete what was applied.

Apply is server-side apply with strict field validation, preceded by a strict server-side dry-run create:
through server-side apply a wrongly-typed field comes back as a 500, while the dry-run create names it in a
422 (and an unknown field in a 400), so a broken manifest is refused with the field named and nothing stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from kuberay.profile import PROFILE
from kuberay.status import ClusterSide, RayServiceStatus, Workload

MANIFESTS = Path(__file__).resolve().parent / "manifests"
FIELD_MANAGER = "observatory"
STRICT = [("fieldValidation", "Strict")]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class ManifestRejected(Exception):
    """The API server refused an object; `fields` are the fields it named."""

    def __init__(self, kind: str, name: str, code: int, message: str, fields: list[str]) -> None:
        super().__init__(f"{kind}/{name} was refused ({code}): {message}")
        self.kind, self.name, self.code, self.message, self.fields = kind, name, code, message, fields


class ClusterUnreachable(Exception):
    pass


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    namespace: str | None


def load_manifests(folder: Path = MANIFESTS) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k folder` would apply: its kustomization's resources, in order, with the
    kustomization's namespace set on every namespaced object (the only kustomize features we use)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    namespace = kustomization.get("namespace")
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        for doc in yaml.load_all((folder / resource).read_text(), Loader=yaml.CSafeLoader):
            if not doc:
                continue
            if namespace and doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = namespace
            docs.append(doc)
    return docs


def pod_templates(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    """The head's and every worker group's pod template of a RayService."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]


def _rejection(doc: dict[str, Any], e: ApiException) -> ManifestRejected:
    kind, name = doc.get("kind", "?"), doc.get("metadata", {}).get("name", "?")
    try:
        body = json.loads(e.body or "{}")
    except ValueError:
        body = {}
    causes = (body.get("details") or {}).get("causes") or []
    fields = [c["field"] for c in causes if c.get("field")]
    return ManifestRejected(kind, name, e.status or 0, body.get("message") or str(e.reason), fields)


class ClusterClient:
    def __init__(self, api: ApiClient, namespace: str = PROFILE.namespace) -> None:
        self.api = api
        self.namespace = namespace
        try:
            self.dynamic = DynamicClient(api)
        except Exception as e:  # urllib3 and kubernetes raise many kinds here; all mean the same to a user
            host = api.configuration.host
            raise ClusterUnreachable(f"cannot reach the Kubernetes API at {host}: {e}") from e

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, context: str | None = None, namespace: str = PROFILE.namespace
    ) -> ClusterClient:
        try:
            api = kube_config.new_client_from_config(config_file=path, context=context)
        except (kube_config.ConfigException, OSError) as e:
            raise ClusterUnreachable(f"no usable kubeconfig ({e}); set KUBECONFIG or pass --kubeconfig") from e
        return cls(api, namespace)

    # ------------------------------------------------------------ objects

    def _resource(self, doc: dict[str, Any]) -> Any:
        try:
            return self.dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        except ResourceNotFoundError:
            self.dynamic.resources.invalidate_cache()  # a CRD created a moment ago
            try:
                return self.dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            except ResourceNotFoundError as e:
                hint = " (install the KubeRay operator and its CRDs first)" if "ray.io" in doc["apiVersion"] else ""
                raise ManifestRejected(
                    doc["kind"], doc["metadata"]["name"], 404, f"{doc['apiVersion']} {doc['kind']} unknown{hint}", []
                ) from e

    def validate(self, doc: dict[str, Any]) -> None:
        """A strict server-side dry run (a create, or a replace of the live object): raises ManifestRejected
        naming the field of a broken object, and stores nothing."""
        resource = self._resource(doc)
        meta = doc["metadata"]
        namespace = meta.get("namespace")
        live = self.get(doc["apiVersion"], doc["kind"], meta["name"], namespace)
        try:
            if live is None:
                self.dynamic.create(resource, body=doc, namespace=namespace, dry_run="All", query_params=list(STRICT))
            else:  # a dry-run create would clash with what the live object holds (e.g. its node ports)
                body = {**doc, "metadata": {**meta, "resourceVersion": live["metadata"]["resourceVersion"]}}
                self.dynamic.replace(resource, body=body, namespace=namespace, dry_run="All", query_params=list(STRICT))
        except ApiException as e:
            raise _rejection(doc, e) from e

    def apply(self, docs: Iterable[dict[str, Any]]) -> list[Applied]:
        """Validate every object first (the namespace must exist for that, so it is created first), then
        server-side apply each (strict fields, our field manager): a broken object stores nothing else."""
        docs = list(docs)
        for doc in docs:
            if doc["kind"] != "Namespace":
                self._ensure_namespace(doc["metadata"].get("namespace"))
            self.validate(doc)
        applied = []
        for doc in docs:
            resource = self._resource(doc)
            meta = doc["metadata"]
            try:
                self.dynamic.server_side_apply(
                    resource,
                    body=doc,
                    name=meta["name"],
                    namespace=meta.get("namespace"),
                    field_manager=FIELD_MANAGER,
                    force_conflicts=True,
                    query_params=list(STRICT),
                )
            except ApiException as e:
                raise _rejection(doc, e) from e
            applied.append(Applied(doc["kind"], meta["name"], meta.get("namespace")))
        return applied

    def _ensure_namespace(self, namespace: str | None) -> None:
        if namespace is None or self.exists({"apiVersion": "v1", "kind": "Namespace", "name": namespace}):
            return
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])

    def exists(self, ref: dict[str, Any]) -> bool:
        resource = self._resource({**ref, "metadata": {"name": ref["name"]}})
        try:
            resource_namespace = ref.get("namespace") if resource.namespaced else None
            self.dynamic.get(resource, name=ref["name"], namespace=resource_namespace)
            return True
        except NotFoundError:
            return False

    def create_if_absent(self, doc: dict[str, Any]) -> bool:
        """Create an object unless one of that name exists (a Secret whose passwords the databases already
        use must not be replaced). True when it was created."""
        meta = doc["metadata"]
        if meta.get("namespace"):
            self._ensure_namespace(meta["namespace"])
        try:
            self.dynamic.create(
                self._resource(doc), body=doc, namespace=meta.get("namespace"), query_params=list(STRICT)
            )
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise _rejection(doc, e) from e

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        resource = self._resource({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}})
        try:
            return self.dynamic.get(resource, name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def list_objects(self, api_version: str, kind: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        resource = self._resource({"apiVersion": api_version, "kind": kind, "metadata": {"name": ""}})
        found = self.dynamic.get(resource, namespace=self.namespace, label_selector=label_selector)
        return [item.to_dict() for item in found.items]

    # ------------------------------------------------------------ RayService

    def status(self, name: str = PROFILE.name, backing: bool = True) -> RayServiceStatus:
        obj = self.get("ray.io/v1", "RayService", name, self.namespace)
        if obj is None:
            return RayServiceStatus(name=name, exists=False)
        status = RayServiceStatus.of(obj)
        for side in (status.active, status.pending):
            self._cluster_state(side)
        if backing:
            status.backing = self.workloads()
        return status

    def _cluster_state(self, side: ClusterSide) -> None:
        if side.cluster:
            cluster = self.get("ray.io/v1", "RayCluster", side.cluster, self.namespace)
            side.cluster_state = ((cluster or {}).get("status") or {}).get("state", "") if cluster else "missing"

    def workloads(self) -> list[Workload]:
        out = []
        for kind in ("StatefulSet", "Deployment"):
            for obj in self.list_objects("apps/v1", kind, "app.kubernetes.io/part-of=observatory"):
                st = obj.get("status") or {}
                wanted = (obj.get("spec") or {}).get("replicas", 1)
                out.append(
                    Workload(kind=kind, name=obj["metadata"]["name"], ready=st.get("readyReplicas") or 0, wanted=wanted)
                )
        return sorted(out, key=lambda w: w.name)

    def wait_ready(
        self,
        name: str = PROFILE.name,
        timeout_s: float = 900,
        on_progress: Callable[[RayServiceStatus], None] | None = None,
        poll_s: float = 1.0,
        until: Callable[[RayServiceStatus], bool] = lambda s: s.ready,
    ) -> RayServiceStatus:
        """Poll until `until(status)` holds (by default: the RayService is Ready), reporting each change."""
        deadline = time.monotonic() + timeout_s
        last: list[str] = []
        while True:
            status = self.status(name, backing=False)
            if on_progress is not None and status.lines() != last:
                on_progress(status)
            last = status.lines()
            if until(status):
                return status
            if time.monotonic() >= deadline:
                pending = "; ".join(status.still_pending()) or "nothing else reported"
                raise TimeoutError(
                    f"RayService {name} not ready after {timeout_s:g}s: {status.reason}; still pending: {pending}"
                )
            time.sleep(poll_s)

    # ------------------------------------------------------------ delete

    def delete(self, docs: Iterable[dict[str, Any]], keep: Callable[[dict[str, Any]], bool] = lambda d: False) -> None:
        """Delete the objects in reverse order (the RayService first, the Namespace last); what they own
        (RayCluster, pods, services) is removed by the garbage collector."""
        for doc in reversed(list(docs)):
            if keep(doc):
                continue
            resource = self._resource(doc)
            meta = doc["metadata"]
            try:
                self.dynamic.delete(
                    resource, name=meta["name"], namespace=meta.get("namespace"), propagation_policy="Background"
                )
            except NotFoundError:
                pass

    def wait_gone(self, timeout_s: float = 120, poll_s: float = 1.0) -> None:
        """Until no RayService, RayCluster or Ray pod of ours is left in the namespace."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = [
                f"{kind}/{o['metadata']['name']}"
                for api_version, kind, selector in (
                    ("ray.io/v1", "RayService", None),
                    ("ray.io/v1", "RayCluster", None),
                    ("v1", "Pod", "ray.io/is-ray-node=yes"),
                )
                for o in self.list_objects(api_version, kind, selector)
            ]
            if not left:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"still there after {timeout_s:g}s: {', '.join(left)}")
            time.sleep(poll_s)
