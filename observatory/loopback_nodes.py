"""A multi-node Ray cluster on this machine, as KubeRay lays the observatory out: a head without CPUs that
keeps the Serve apps, and worker nodes with the CPUs and custom resources asked for. For the scale-out tests
and the nodes benchmark.

The nodes are started with Ray's own multi-node helper (`ray.cluster_utils.Cluster`), all on 127.0.0.1: the
`ray start` CLI either refuses a second node (loopback-only mode) or dials the machine's outward address.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from observatory.serve_ingress import ray_env

RAY = Path(sys.executable).parent / "ray"


def _stop_ray(env: dict[str, str]) -> None:
    subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=300, check=False)


@contextmanager
def loopback_nodes(
    extra_env: dict[str, str],
    workers: list[tuple[int, dict[str, float]]],
    gcs_port: int,
    dashboard_port: int = 8265,
) -> Iterator[Any]:
    """Yields the `ray.cluster_utils.Cluster` (its `worker_nodes` can be killed) once every node is up: one
    worker node per (CPUs, custom resources) of `workers`. Every node's processes, and the workers they
    spawn, get `ray_env(**extra_env)`. On exit every node goes down with every process on it (no graceful
    Serve shutdown first: nothing is left to settle, and it takes ~30 s)."""
    from ray.cluster_utils import Cluster

    env = ray_env(**extra_env)
    _stop_ray(env)
    saved = dict(os.environ)
    os.environ.update(env)  # the nodes' processes (and the workers they spawn) inherit this
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "gcs_server_port": gcs_port,
                "node_ip_address": "127.0.0.1",
                "include_dashboard": True,
                "dashboard_host": "127.0.0.1",
                "dashboard_port": dashboard_port,
            },
        )
        for cpus, resources in workers:
            cluster.add_node(num_cpus=cpus, resources=resources, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        os.environ.clear()
        os.environ.update(saved)
        yield cluster
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if cluster is not None:
            cluster.shutdown()
        _stop_ray(env)
