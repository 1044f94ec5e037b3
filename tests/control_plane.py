"""A real Kubernetes control plane and the real KubeRay operator on loopback, for the KubeRay tests.

etcd, kube-apiserver, kube-controller-manager (garbage collector and namespaces), the KubeRay operator and
kwok (a fake kubelet: pods on its node are marked Running and Ready) run from the binaries that
`scripts/k8s.sh build` keeps in its cache. Everything runs in a scratch folder and is killed at the end.

    python -m tests.control_plane     # start it by hand; prints KUBECONFIG; Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from kubernetes import client as k8s
from kubernetes import config as kube_config

ROOT = Path(__file__).resolve().parents[1]
K8S_SCRIPT = ROOT / "scripts" / "k8s.sh"
TOKEN = "observatory-test-token"
NODE = "kwok-node-0"
PORTS = {"etcd": 23790, "etcd-peer": 23800, "apiserver": 26443, "operator-metrics": 28080, "operator-probe": 28081}


def cache() -> Path:
    """The cache folder of the binaries; builds them on first use (about 20 minutes on 2 cores)."""
    path = Path(subprocess.run([str(K8S_SCRIPT), "path"], capture_output=True, text=True, check=True).stdout.strip())
    if not all((path / f".built-{step}").exists() for step in ("etcd", "kubernetes", "operator", "kwok")):
        subprocess.run([str(K8S_SCRIPT), "build"], check=True)
    return path


@dataclass
class ControlPlane:
    kubeconfig: Path
    crds: Path
    node: str = NODE

    def api(self) -> k8s.ApiClient:
        return kube_config.new_client_from_config(config_file=str(self.kubeconfig))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait(
    what: str, check: Callable[[], bool], timeout_s: float, procs: dict[str, subprocess.Popen[bytes]], logs: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                tail = (logs / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n{tail}")
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{what} not ready after {timeout_s}s (logs: {logs})")


def _kubeconfig(path: Path, certs: Path) -> None:
    cluster = {
        "server": f"https://127.0.0.1:{PORTS['apiserver']}",
        "certificate-authority": str(certs / "apiserver.crt"),
    }
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": cluster}],
                "users": [{"name": "admin", "user": {"token": TOKEN}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                "current-context": "test",
            }
        )
    )


def _start(name: str, args: list[str], logs: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(logs / f"{name}.log", "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _create_crds(api: k8s.ApiClient, folder: Path) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    names = []
    for path in sorted(folder.glob("ray.io_*.yaml")):
        doc = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        # created, not applied: the last-applied annotation of a client-side apply would be too big
        ext.create_custom_resource_definition(doc)
        names.append(doc["metadata"]["name"])

    def established() -> bool:
        for name in names:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    deadline = time.monotonic() + 60
    while not established():
        if time.monotonic() > deadline:
            raise RuntimeError("KubeRay CRDs not Established after 60 s")
        time.sleep(0.25)


def _create_node(api: k8s.ApiClient) -> None:
    k8s.CoreV1Api(api).create_node(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"kubernetes.io/hostname": NODE, "type": "kwok"},
            },
            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"}},
        }
    )


@contextmanager
def control_plane() -> Iterator[ControlPlane]:
    bins = cache()
    for name, port in PORTS.items():
        if not _port_free(port):
            raise RuntimeError(f"port {port} ({name}) is taken: is another control plane running?")
    with tempfile.TemporaryDirectory(prefix="observatory-k8s-") as scratch:
        work = Path(scratch)
        logs, certs = work / "logs", work / "certs"
        logs.mkdir()
        certs.mkdir()
        subprocess.run(["openssl", "genrsa", "-out", str(certs / "sa.key"), "2048"], check=True, capture_output=True)
        (work / "tokens.csv").write_text(f"{TOKEN},admin,admin-uid,system:masters\n")
        kubeconfig = work / "kubeconfig"
        procs: dict[str, subprocess.Popen[bytes]] = {}
        b = bins / "bin"
        try:
            procs["etcd"] = _start(
                "etcd",
                [
                    str(b / "etcd"),
                    "--data-dir", str(work / "etcd"),
                    "--listen-client-urls", f"http://127.0.0.1:{PORTS['etcd']}",
                    "--advertise-client-urls", f"http://127.0.0.1:{PORTS['etcd']}",
                    "--listen-peer-urls", f"http://127.0.0.1:{PORTS['etcd-peer']}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{PORTS['etcd-peer']}",
                    "--initial-cluster", f"default=http://127.0.0.1:{PORTS['etcd-peer']}",
                    "--listen-metrics-urls", "",
                ],
                logs,
            )  # fmt: skip
            etcd_health = f"http://127.0.0.1:{PORTS['etcd']}/health"
            _wait("etcd", lambda: httpx.get(etcd_health, timeout=1).status_code == 200, 30, procs, logs)
            procs["apiserver"] = _start(
                "apiserver",
                [
                    str(b / "kube-apiserver"),
                    f"--etcd-servers=http://127.0.0.1:{PORTS['etcd']}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={PORTS['apiserver']}",
                    f"--cert-dir={certs}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={certs / 'sa.key'}",
                    f"--service-account-signing-key-file={certs / 'sa.key'}",
                    f"--token-auth-file={work / 'tokens.csv'}",
                    "--authorization-mode=RBAC",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    "--allow-privileged=true",
                ],
                logs,
            )
            ready = f"https://127.0.0.1:{PORTS['apiserver']}/readyz"
            headers = {"Authorization": f"Bearer {TOKEN}"}
            _wait(
                "kube-apiserver",
                lambda: httpx.get(ready, headers=headers, verify=False, timeout=2).status_code == 200,
                120,
                procs,
                logs,
            )
            _kubeconfig(kubeconfig, certs)
            kc = str(kubeconfig)
            procs["controller-manager"] = _start(
                "controller-manager",
                [
                    str(b / "kube-controller-manager"),
                    f"--kubeconfig={kc}",
                    "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,"
                    "serviceaccount-token-controller,root-ca-certificate-publisher-controller",
                    f"--service-account-private-key-file={certs / 'sa.key'}",
                    f"--root-ca-file={certs / 'apiserver.crt'}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    "--secure-port=0",
                ],
                logs,
            )
            api = kube_config.new_client_from_config(config_file=kc)
            _create_crds(api, bins / "crds")
            _create_node(api)
            procs["operator"] = _start(
                "operator",
                [
                    str(b / "ray-operator"),
                    f"--kubeconfig={kc}",
                    f"--metrics-addr=127.0.0.1:{PORTS['operator-metrics']}",
                    f"--health-probe-bind-address=127.0.0.1:{PORTS['operator-probe']}",
                    "--enable-leader-election=false",
                ],
                logs,
            )
            probe = f"http://127.0.0.1:{PORTS['operator-probe']}/readyz"
            _wait("KubeRay operator", lambda: httpx.get(probe, timeout=1).status_code == 200, 60, procs, logs)
            home = work / "kwok-home"
            home.mkdir()
            stages = sorted(str(p) for p in (bins / "stages").glob("*.yaml"))
            procs["kwok"] = _start(
                "kwok",
                [
                    str(b / "kwok"),
                    f"--kubeconfig={kc}",
                    *[arg for s in stages for arg in ("-c", s)],
                    f"--manage-single-node={NODE}",
                    "--node-ip=127.0.0.1",
                    "--cidr=10.244.0.0/24",
                ],
                logs,
                env={**os.environ, "HOME": str(home)},
            )
            core = k8s.CoreV1Api(api)

            def node_ready() -> bool:
                conditions = core.read_node(NODE).status.conditions or []
                return any(c.type == "Ready" and c.status == "True" for c in conditions)

            _wait("kwok node", node_ready, 60, procs, logs)
            yield ControlPlane(kubeconfig=kubeconfig, crds=bins / "crds")
        finally:
            for proc in reversed(list(procs.values())):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # each its own session: nothing of it is left
            for proc in procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    # Explicit handlers: a job started in the background of a non-interactive shell ignores SIGINT.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with control_plane() as plane:
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
