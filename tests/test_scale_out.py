"""Scale-out on a local multi-node Ray cluster, as KubeRay runs the observatory: a head without CPUs that keeps
the Serve apps, and two worker nodes (2 CPUs each, offering `observatory-worker`) where the pipeline and the
handlers go; serve_app/config.yaml with the processors placed there and autoscaled between 2 and 4."""

from __future__ import annotations

import os
import random
import signal
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from ray.util.state import list_tasks

from contracts import EventType, JobStatus
from observatory import backends
from observatory.settings import Settings
from tests.cluster import CONFIG, DASHBOARD, multi_node_cluster
from tests.helpers import FAST_RETRIES, final_jobs, scratch, stats_settle, wait_for

pytestmark = pytest.mark.e2e

WORKER_CPUS = 2
OFFER = {"observatory-worker": 1000.0}
MIN, MAX = 2, 4
RECORD_SLACK_MS = 50


def scale_out_config() -> dict[str, Any]:
    config = yaml.safe_load(CONFIG.read_text())
    (workers,) = [a for a in config["applications"] if a["name"] == "workers"]
    workers["args"].update(
        processors=MIN,  # spread over both worker nodes
        min_processors=MIN,
        max_processors=MAX,
        target_backlog=50,
        max_wait_s=10,
        scale_down_window_s=10,
        check_interval_s=1.0,
        drain_s=60,
        placement={"observatory-worker": 0.001},
    )
    return config


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[tuple[httpx.Client, backends.Backends, Any]]:
    s = Settings(OBSERVATORY_NAMESPACE=scratch(f"{settings.namespace}_scale_{uuid.uuid4().hex[:6]}"))
    truth = backends.build(s)
    truth.setup()
    env = {"OBSERVATORY_NAMESPACE": s.namespace, **FAST_RETRIES}
    try:
        with (
            multi_node_cluster(env, scale_out_config(), [(WORKER_CPUS, OFFER), (WORKER_CPUS, OFFER)]) as (url, ray),
            httpx.Client(base_url=url, timeout=60) as api,
        ):
            yield api, truth, ray
    finally:
        truth.close()


def batch(api: httpx.Client, jobs: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(jobs), 500):
        r = api.post("/api/jobs/batch", json={"jobs": jobs[start : start + 500]})
        assert r.status_code == 202, r.text
        ids += [a["job_id"] for a in r.json()["accepted"]]
    return ids


def workers(api: httpx.Client) -> dict[str, Any]:
    r = api.get("/read/workers")
    assert r.status_code == 200, r.text
    return r.json()


def worker_nodes(api: httpx.Client) -> set[str]:
    return {n["node_id"] for n in workers(api)["nodes"] if n["alive"] and not n["is_head"]}


def most_at_once(spans: list[tuple[int, int]], slack_ms: int = RECORD_SLACK_MS) -> int:
    """The most intervals open at the same instant, each end taken `slack_ms` early. Ray's recorded start and
    end of back-to-back runs on one CPU are ~2 ms apart, and about one run in seven showed three at once on a
    2-CPU node (most likely an end recorded after the CPU went to the next run); two runs really sharing one
    CPU overlap for most of a run (0.3 s and up), which zero-CPU handler tasks show: five at once."""
    edges = sorted([(start, 1) for start, _ in spans] + [(max(start, end - slack_ms), -1) for start, end in spans])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def spread_processors(api: httpx.Client) -> set[str] | None:
    """The worker nodes of the processors when they are alive, consuming, and on different nodes (None while
    the workers app is still starting: the read model answers 503 until it answers within 2 s)."""
    r = api.get("/read/workers")
    if r.status_code == 503 and "starting, or down" in r.text:
        return None
    assert r.status_code == 200, r.text
    procs = [a for a in r.json()["workers"]["actors"] if a["kind"] == "processor"]
    nodes = {a["node_id"] for a in procs}
    ok = procs and all(a["state"] == "alive" and a["connected"] for a in procs) and len(nodes) == len(procs)
    return nodes if ok else None


def test_jobs_of_every_type_run_on_both_nodes_and_cpu_heavy_ones_within_their_cpus(stack):
    api, _, _ = stack
    assert wait_for(lambda: spread_processors(api), "the processors consuming on both nodes", 60) == worker_nodes(api)
    heavy = (
        [{"type": "primes", "payload": {"limit": 30_000_000 + i}} for i in range(16)]
        + [{"type": "hash", "payload": {"data": f"h{i}", "rounds": 200_000}} for i in range(16)]
        + [{"type": "noop", "payload": {}} for _ in range(300)]
    )
    # The light ones once the heavy ones are done: SPREAD places a run only on a node with its CPU free, so
    # light jobs sent behind a busy node's queue would all land on whichever node frees up first.
    light = [{"type": "sleep", "payload": {"seconds": 0.3}} for _ in range(16)] + [
        {"type": "monte_carlo_pi", "payload": {"samples": 200_000, "shards": 2, "seed": i}} for i in range(8)
    ]
    done: dict[str, Any] = {}
    for jobs in (heavy, light):
        ids = batch(api, jobs)
        done |= wait_for(lambda ids=ids: final_jobs(api, ids), "every job final", 300)

    nodes = worker_nodes(api)
    assert len(nodes) == 2
    ran_on: dict[str, set[str]] = defaultdict(set)
    for j in done.values():
        assert j["status"] == "COMPLETED", j
        ran_on[j["type"]] |= {a["node"] for a in j["attempt_history"] if a["finished_at"]}
    assert {t: n == nodes for t, n in ran_on.items()} == dict.fromkeys(ran_on, True), ran_on

    # Ray's own record of each handler task: per node, never more CPU-bound handlers running at once than
    # its CPUs (each asks for one), and more at once than one node has (both nodes worked in parallel).
    tasks = list_tasks(
        address=DASHBOARD, filters=[("func_or_class_name", "=", "run_handler")], detail=True, limit=10_000
    )
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for t in tasks:
        if t.name.split(":")[1] in ("primes", "hash") and t.start_time_ms and t.end_time_ms:
            spans[t.node_id].append((t.start_time_ms, t.end_time_ms))
    assert sum(len(s) for s in spans.values()) >= 32
    assert all(most_at_once(s) <= WORKER_CPUS for s in spans.values()), {n: most_at_once(s) for n, s in spans.items()}
    assert most_at_once([span for s in spans.values() for span in s]) > WORKER_CPUS


def test_a_job_that_no_node_can_run_says_why_and_can_be_cancelled(stack):
    api, _, _ = stack
    r = api.post("/api/jobs", json={"type": "primes", "payload": {"limit": 10}, "resources": {"cpus": 4}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def waiting() -> str | None:
        history = api.get(f"/read/jobs/{job_id}").json()["attempt_history"]
        return history[-1]["waiting"] if history and history[-1]["waiting"] else None

    reason = wait_for(waiting, "the attempt to say why it waits", 60)
    assert reason.startswith("unschedulable: no node of the cluster offers CPU 4"), reason
    assert api.get(f"/read/jobs/{job_id}").json()["status"] == "RUNNING"

    assert api.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    job = wait_for(lambda: final_jobs(api, [job_id]), "the cancel to stand", 60)[job_id]
    assert job["status"] == "CANCELLED" and job["attempt_history"][-1]["node"] is None


def test_a_backlog_scales_processors_up_to_max_and_back_to_min_and_every_job_runs_once(stack):
    api, truth, _ = stack
    # Ready messages call for all four while over 150 are left: long enough for two more to start on a busy node.
    ids = batch(api, [{"type": "sleep", "payload": {"seconds": 0.1}}] * 1000)
    seen_draining: list[dict[str, Any]] = []
    last: list[Any] = [None]

    def scaled(count: int) -> dict[str, Any] | None:
        w = last[0] = workers(api)["workers"]
        seen_draining.extend(a for a in w["actors"] if a["state"] == "draining")
        alive = [a for a in w["actors"] if a["kind"] == "processor" and a["state"] == "alive"]
        steady = not any(a["state"] == "draining" for a in w["actors"])
        return w if w["desired"] == w["actual"] == len(alive) == count and steady else None

    try:
        up = wait_for(lambda: scaled(MAX), f"{MAX} processors", 120)
    except AssertionError as e:
        raise AssertionError(f"{e}; the workers last seen: {last[0]}") from None
    assert up["backlog"] is not None and up["reason"]
    wait_for(lambda: all(s.is_final for (t, s), n in truth.jobs.counts()[0].items() if n), "every job final", 600)
    wait_for(lambda: scaled(MIN), f"back to {MIN} processor", 120)

    assert seen_draining, "no processor was seen draining"
    for i in ids:
        job = truth.jobs.get(uuid.UUID(i))
        assert job is not None and job.status is JobStatus.COMPLETED
        finished = [a for a in truth.jobs.attempts(job.id) if a.finished_at is not None]
        assert len(finished) == 1 and finished[0].error is None
    for i in random.sample(ids, 100):  # the event store is slower to ask job by job: a sample
        completed = [e for e in truth.events.for_job(uuid.UUID(i)) if e.event_type is EventType.JOB_COMPLETED]
        assert len(completed) == 1
    stats_settle(api, truth, "stats equal to the job store", 60)


def test_a_worker_node_killed_mid_run_loses_no_job_and_repeats_none(stack):
    api, truth, ray = stack
    ids = batch(api, [{"type": "sleep", "payload": {"seconds": 1.0}}] * 40 + [{"type": "noop", "payload": {}}] * 200)
    victim = ray.worker_nodes and sorted(ray.worker_nodes, key=lambda n: n.node_id)[-1]
    assert victim

    def running_on_victim() -> bool:
        page = api.get("/read/jobs", params={"status": "RUNNING", "limit": 100}).json()["items"]
        for j in page:
            history = api.get(f"/read/jobs/{j['id']}").json()["attempt_history"]
            if history and history[-1]["node"] == victim.node_id:
                return True
        return False

    wait_for(running_on_victim, "a job running on the node to kill", 60)
    (raylet,) = victim.all_processes["raylet"]
    os.kill(raylet.process.pid, signal.SIGKILL)

    done = wait_for(lambda: final_jobs(api, ids), "every job final", 400)
    for job_id, job in done.items():
        assert job["status"] == "COMPLETED", job
        finished = [a for a in job["attempt_history"] if a["finished_at"] and a["error"] is None]
        assert len(finished) == 1, job["attempt_history"]
        events = truth.events.for_job(uuid.UUID(job_id))
        assert sum(e.event_type is EventType.JOB_COMPLETED for e in events) == 1
    assert worker_nodes(api) == {n.node_id for n in ray.worker_nodes if n is not victim}
    stats_settle(api, truth, "stats equal to the job store", 120)
