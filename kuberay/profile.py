"""What differs between a laptop's `serve run` and the cluster: names, image, sizes and ports.

Everything cluster-specific lives here, so `serve_app/config.yaml` stays the one description of the
applications and `kuberay.render` turns both into the checked-in manifests.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from observatory import __version__

RAY_VERSION = "2.60.0"
PYTHON_TAG = "py311"
# The KubeRay operator: `cluster up` installs this Helm chart version; the tests run this operator's code.
KUBERAY_CHART_VERSION = "1.5.0"
WORKER_RESOURCE = "observatory-worker"  # offered only by the worker group; the pipeline asks for it


class Pod(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cpu_request: str
    cpu_limit: str
    memory: str  # request = limit: Ray sizes its object store from the memory it sees


class Profile(BaseModel):
    """Sizes for kind on a laptop. Requests: head 2 GiB, each worker 2 GiB, the backing services and the
    autoscaler about 1.6 GiB: with one worker ~5.6 GiB, so give Docker 8 GiB; each further worker (up to
    `max_workers`, added by the autoscaler when handler tasks wait for CPUs) needs 2 GiB more."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "observatory"
    namespace: str = "observatory"
    image: str = f"observatory:{__version__}"
    secret: str = "observatory-credentials"
    head: Pod = Pod(cpu_request="500m", cpu_limit="2", memory="2Gi")
    worker: Pod = Pod(cpu_request="500m", cpu_limit="2", memory="2Gi")
    worker_cpus: int = Field(default=2, description="CPUs a worker pod offers to Ray (its handler tasks)")
    min_workers: int = 1
    max_workers: int = 3
    processors: int = 2
    min_processors: int = 1  # the workers app scales processors on the jobs backlog between these
    max_processors: int = 6
    worker_resource_units: int = 1000  # of WORKER_RESOURCE per worker pod
    placement_units: float = 0.001  # of WORKER_RESOURCE per processor, aggregator and handler task
    # Ports of the kind node that kuberay/kind.yaml maps to the same ports on localhost.
    node_ports: dict[str, int] = {
        "serve": 30800,
        "ray-dashboard": 30265,
        "grafana": 30300,
        "prometheus": 30090,
        "alertmanager": 30093,
        "rabbitmq-management": 31672,
    }
    host_ports: dict[str, int] = {
        "serve": 8000,
        "ray-dashboard": 8265,
        "grafana": 3000,
        "prometheus": 9090,
        "alertmanager": 9093,
        "rabbitmq-management": 15672,
    }


PROFILE = Profile()
