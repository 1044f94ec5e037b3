"""`observatory cluster doctor|up|status|down|secret`: the observatory on kind through KubeRay."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml

from kuberay import doctor
from kuberay.client import ClusterClient, ClusterUnreachable, ManifestRejected, load_manifests, pod_templates
from kuberay.profile import KUBERAY_CHART_VERSION, PROFILE
from kuberay.secret import secret
from kuberay.status import RayServiceStatus

ROOT = Path(__file__).resolve().parents[1]
KIND_CONFIG = ROOT / "kuberay" / "kind.yaml"
DOCKERFILE = ROOT / "kuberay" / "Dockerfile"
KIND_CONTEXT = f"kind-{PROFILE.name}"
HELM_REPO = "https://ray-project.github.io/kuberay-helm/"

app = typer.Typer(help="The observatory on Kubernetes (kind) as a KubeRay RayService.", no_args_is_help=True)

Kubeconfig = Annotated[str | None, typer.Option(help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")]
Context = Annotated[
    str | None, typer.Option(help=f"kubeconfig context (default: the current one; up uses {KIND_CONTEXT})")
]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _client(kubeconfig: str | None, context: str | None) -> ClusterClient:
    try:
        return ClusterClient.from_kubeconfig(kubeconfig, context)
    except ClusterUnreachable as e:
        _fail(str(e))


def _step(args: list[str], what: str) -> None:
    typer.echo(f"· {what}: {' '.join(args)}")
    if subprocess.run(args).returncode != 0:
        _fail(f"{what} failed (the command above); fix it and run `observatory cluster up` again")


@app.command("doctor")
def doctor_command() -> None:
    """Check that docker, kind, kubectl and helm are present and recent enough."""
    findings = doctor.diagnose()
    for line in doctor.report(findings):
        typer.echo(line)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


@app.command("secret")
def secret_command() -> None:
    """Print the namespace and the credentials Secret with fresh random passwords (for `kubectl apply -f -`)."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROFILE.namespace}}
    typer.echo(yaml.safe_dump_all([namespace, secret()], sort_keys=False))


def image_tag() -> str:
    """`observatory:<version>-<hash of what the image holds>`: a rebuilt image is a new tag, so the RayService
    changes and KubeRay rolls the cluster over to it (with `IfNotPresent`, a reused tag would never reach pods)."""
    digest = hashlib.sha256()
    files = [ROOT / "pyproject.toml", ROOT / "README.md", DOCKERFILE]
    for folder in ("observatory", "contracts", "serve_app", "actors", "tui", "kuberay"):
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"{PROFILE.image}-{digest.hexdigest()[:12]}"


def with_image(docs: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] == "RayService":
            for template in pod_templates(doc):
                for container in template["spec"]["containers"]:
                    container["image"] = image
    return docs


def apply_all(client: ClusterClient, image: str | None = None) -> None:
    try:
        created = client.create_if_absent(secret())
        typer.echo(f"· Secret {PROFILE.secret}: {'created with random passwords' if created else 'kept'}")
        docs = load_manifests()
        applied = client.apply(with_image(docs, image) if image else docs)
    except ManifestRejected as e:
        _fail(f"{e}{' (fields: ' + ', '.join(e.fields) + ')' if e.fields else ''}")
    typer.echo(f"· applied {len(applied)} objects to namespace {client.namespace}")


def _progress(status: RayServiceStatus) -> None:
    for line in status.lines():
        typer.echo(f"  {line}")


def urls() -> list[str]:
    ports = PROFILE.host_ports
    return [
        f"observatory API     http://localhost:{ports['serve']}/api  (read model: /read)",
        f"Ray dashboard       http://localhost:{ports['ray-dashboard']}",
        f"Grafana             http://localhost:{ports['grafana']}  (admin password: in Secret {PROFILE.secret})",
        f"Prometheus          http://localhost:{ports['prometheus']}",
        f"Alertmanager        http://localhost:{ports['alertmanager']}",
        f"RabbitMQ management http://localhost:{ports['rabbitmq-management']}",
        f"admin API key       kubectl -n {PROFILE.namespace} get secret {PROFILE.secret} "
        "-o jsonpath='{.data.ADMIN_API_KEY}' | base64 -d",
    ]


@app.command()
def up(
    timeout: Annotated[float, typer.Option(help="seconds to wait for the RayService to be Ready")] = 1200,
    build: Annotated[bool, typer.Option(help="build the image and `kind load` it")] = True,
) -> None:
    """Create the kind cluster, install the KubeRay operator, build and load the image, apply, wait."""
    findings = doctor.diagnose()
    if not all(f.ok for f in findings):
        for line in doctor.report(findings):
            typer.echo(line, err=True)
        _fail("`observatory cluster up` needs the tools above; install what is missing and run it again")
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout.split()
    if PROFILE.name in clusters:
        typer.echo(f"· kind cluster {PROFILE.name}: exists")
    else:
        _step(["kind", "create", "cluster", "--config", str(KIND_CONFIG), "--wait", "120s"], "create the kind cluster")
    _step(["helm", "repo", "add", "kuberay", HELM_REPO, "--force-update"], "add the KubeRay Helm repository")
    _step(
        ["helm", "upgrade", "--install", "kuberay-operator", "kuberay/kuberay-operator", "--version",
         KUBERAY_CHART_VERSION, "--namespace", "kuberay-system", "--create-namespace", "--wait",
         "--kube-context", KIND_CONTEXT],
        "install the KubeRay operator",
    )  # fmt: skip
    image = image_tag()
    if build:
        _step(["docker", "build", "-t", image, "-f", str(DOCKERFILE), str(ROOT)], "build the image")
        _step(["kind", "load", "docker-image", image, "--name", PROFILE.name], "load the image into kind")
    client = _client(None, KIND_CONTEXT)
    apply_all(client, image)
    typer.echo("· waiting for the RayService (first start pulls images: several minutes)")
    try:
        client.wait_ready(timeout_s=timeout, on_progress=_progress)
    except TimeoutError as e:
        _fail(f"{e}; see `observatory cluster status` and `kubectl -n {PROFILE.namespace} get pods`")
    typer.echo("ready.")
    for line in urls():
        typer.echo(f"  {line}")


@app.command()
def status(kubeconfig: Kubeconfig = None, context: Context = None) -> None:
    """The RayService, its clusters and applications, and the backing services at a glance."""
    client = _client(kubeconfig, context)
    try:
        st = client.status()
    except ManifestRejected as e:  # the ray.io resources are unknown: no operator here
        _fail(e.message)
    for line in st.lines():
        typer.echo(line)
    if not st.ready:
        raise typer.Exit(1)


@app.command()
def down(
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    purge: Annotated[bool, typer.Option(help="also delete the namespace: data volumes and the Secret")] = False,
    delete_cluster: Annotated[bool, typer.Option(help="also delete the kind cluster")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait until the Ray pods are gone")] = 180,
) -> None:
    """Delete the observatory; the RayCluster and its pods follow the RayService (owner references)."""
    client = _client(kubeconfig, context)
    try:
        client.delete(load_manifests(), keep=lambda d: d["kind"] == "Namespace" and not purge)
        client.wait_gone(timeout)
    except (TimeoutError, ManifestRejected) as e:
        _fail(str(e))
    typer.echo("the observatory is gone" + ("" if purge else f" (data volumes and Secret {PROFILE.secret} kept)"))
    if delete_cluster:
        _step(["kind", "delete", "cluster", "--name", PROFILE.name], "delete the kind cluster")


def main() -> None:  # pragma: no cover - `python -m kuberay.cli`
    app(prog_name="observatory cluster")


if __name__ == "__main__":
    sys.exit(main())
