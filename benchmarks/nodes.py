"""Throughput with 1 and 2 (or more) Ray worker nodes, as KubeRay runs the observatory: a head without CPUs
that keeps the Serve apps, worker nodes offering `observatory-worker` where the processors, aggregators and
handlers go. Real backends only (the services must be up: `scripts/services.sh up`).

    python -m benchmarks.nodes [--nodes 1,2] [--cpus 2] [--jobs 5000] [--processors 2]

Every node of a local cluster shares this machine's cores: more nodes add Ray's logical CPUs and spread the
pipeline, not physical cores, so the rows show what spreading costs or gains here, not a cluster's scaling."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import yaml

from benchmarks import cleanup, observatory_load
from benchmarks.measure import BenchError
from benchmarks.ray_cluster import API, CONFIG, CONNECTIONS, DASHBOARD, RAY_GCS_PORT, ROOT, _wait_ready, fresh_namespace
from observatory.loopback_nodes import loopback_nodes

OFFER = {"observatory-worker": 1000.0}
JOBS = {
    "noop (inline)": {"type": "noop", "payload": {}},
    "sleep 0 s (a Ray task each)": {"type": "sleep", "payload": {"seconds": 0}},
}


def _config(processors: int) -> dict[str, Any]:
    config = yaml.safe_load(CONFIG.read_text())
    workers = next(a for a in config["applications"] if a["name"] == "workers")
    workers["args"].update(
        processors=processors,
        min_processors=processors,
        max_processors=processors,
        placement={"observatory-worker": 0.001},
    )
    return config


@contextmanager
def cluster(nodes: int, cpus: int, processors: int, namespace: str) -> Iterator[str]:
    env = {"OBSERVATORY_NAMESPACE": namespace, "OBSERVATORY_RATE_LIMIT": "1000000", "OBSERVATORY_RATE_BURST": "1000000"}
    with loopback_nodes(env, [(cpus, OFFER)] * nodes, int(RAY_GCS_PORT)):
        r = httpx.put(f"{DASHBOARD}/api/serve/applications/", json=_config(processors), timeout=120)
        if r.status_code != 200:
            raise BenchError(f"deploy answered {r.status_code}: {r.text[:500]}")
        _wait_ready()
        yield API


async def _rates(api: str, jobs: int) -> dict[str, float]:
    out = {}
    async with observatory_load.Observatory(api) as obs:
        for label, job in JOBS.items():
            await observatory_load.warm_up(obs, job)
            out[label] = (await observatory_load.throughput(obs, job, jobs, 100, 4)).rate
    return out


def _services_env() -> None:
    if all(os.environ.get(name) for name in CONNECTIONS):
        return
    out = subprocess.run([str(ROOT / "scripts" / "services.sh"), "env"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name in CONNECTIONS:
            os.environ[name] = shlex.split(value)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.nodes", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="1,2", help="worker-node counts to measure, comma-separated")
    p.add_argument("--cpus", type=int, default=2, help="CPUs each worker node offers to Ray")
    p.add_argument("--jobs", type=int, default=5000, help="jobs per end-to-end run")
    p.add_argument("--processors", type=int, default=2)
    opts = p.parse_args(argv)
    _services_env()
    rows = []
    for n in [int(x) for x in opts.nodes.split(",")]:
        namespace = fresh_namespace()
        print(f"[nodes {time.strftime('%H:%M:%S')}] {n} worker node(s), {opts.cpus} CPUs each", file=sys.stderr)
        try:
            with cluster(n, opts.cpus, opts.processors, namespace) as api:
                rows.append((n, asyncio.run(_rates(api, opts.jobs))))
        finally:
            cleanup.drop_namespace(namespace)
    labels = list(JOBS)
    print(f"| worker nodes ({opts.cpus} CPUs each, {opts.processors} processors) | " + " | ".join(labels) + " |")
    print("| --- |" + " --- |" * len(labels))
    for n, rates in rows:
        print(f"| {n} | " + " | ".join(f"{rates[label]:,.0f} jobs/s" for label in labels) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
