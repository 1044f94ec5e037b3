"""End to end: serve_app/config.yaml on a local Ray cluster against the real servers."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sqlite3
import uuid
from typing import Any

import httpx
import pytest
import redis

from contracts import JobStatus
from observatory.jobs.builtin.primes import count_primes_below
from observatory.settings import Settings
from tests.helpers import actor_pids, final_jobs, parent_pid, process_name, settled, stats_settle, wait_for, workers_arg

pytestmark = pytest.mark.e2e


def workload() -> list[dict[str, Any]]:
    """At least 200 jobs covering every type, with a known expected outcome each."""
    jobs: list[dict[str, Any]] = []
    for i in range(60):
        jobs.append({"type": "hash", "payload": {"data": f"item-{i}", "rounds": 1 + i % 5}})
        jobs.append({"type": "primes", "payload": {"limit": 1000 + 37 * i}})
        failing = i % 4 == 0  # one attempt only: dead-lettered at once
        jobs.append(
            {
                "type": "sleep",
                "payload": {"seconds": 0.01, "fail_probability": 1.0 if failing else 0.0},
                **({"max_attempts": 1} if failing else {}),
            }
        )
    for i in range(30):
        jobs.append({"type": "monte_carlo_pi", "payload": {"samples": 40_000, "shards": 1 + i % 4, "seed": i}})
        jobs.append({"type": "noop", "payload": {}})  # an inline type: micro-batched in the processors
    return jobs


def expected(job: dict[str, Any]) -> tuple[JobStatus, Any]:
    p = job["payload"]
    match job["type"]:
        case "hash":
            d = p["data"].encode()
            for _ in range(p["rounds"]):
                d = hashlib.sha256(d).digest()
            return JobStatus.COMPLETED, {"sha256": d.hex(), "rounds": p["rounds"]}
        case "primes":
            return JobStatus.COMPLETED, {"limit": p["limit"], "count": count_primes_below(p["limit"])}
        case "sleep":
            failed = p["fail_probability"] == 1.0
            return (JobStatus.DEAD_LETTERED, None) if failed else (JobStatus.COMPLETED, {"slept": p["seconds"]})
        case _:
            return JobStatus.COMPLETED, None  # noop's result; monte_carlo_pi's is checked against π below


def submit_workload(api: httpx.Client, jobs: list[dict[str, Any]], singles: int) -> list[tuple[dict[str, Any], str]]:
    """The first `singles` jobs one request each, the rest in batches of 100; (job, job_id) in order."""
    out: list[tuple[dict[str, Any], str]] = []
    for job in jobs[:singles]:
        r = api.post("/api/jobs", json=job)
        assert r.status_code == 202, r.text
        out.append((job, r.json()["job_id"]))
    for start in range(singles, len(jobs), 100):
        chunk = jobs[start : start + 100]
        r = api.post("/api/jobs/batch", json={"jobs": chunk})
        assert r.status_code == 202, r.text
        out += [(job, a["job_id"]) for job, a in zip(chunk, r.json()["accepted"], strict=True)]
    return out


@pytest.fixture(scope="module")
def submitted(api: httpx.Client) -> list[tuple[dict[str, Any], str]]:
    return submit_workload(api, workload(), singles=40)


def test_every_job_reaches_its_final_state_with_the_right_result(api, submitted):
    types = {j["type"] for j, _ in submitted}
    assert len(submitted) >= 200 and types == {"hash", "primes", "sleep", "monte_carlo_pi", "noop"}

    jobs = wait_for(lambda: final_jobs(api, [i for _, i in submitted]), "all jobs final")

    for job, job_id in submitted:
        got = jobs[job_id]
        status, result = expected(job)
        assert got["status"] == status, (job, got)
        assert got["attempts"] == 1
        if job["type"] == "monte_carlo_pi":
            assert abs(got["result"]["estimate"] - math.pi) < 0.1
            assert got["result"]["shards"] == job["payload"]["shards"]
        else:
            assert got["result"] == result
        if status is JobStatus.DEAD_LETTERED:
            assert "simulated failure" in got["error"]
            assert [a["error"] is not None for a in got["attempt_history"]] == [True]


def test_each_jobs_events_are_stored_in_order_without_duplicates(api, submitted):
    lifecycles = {
        JobStatus.COMPLETED: ["job.created", "job.started", "job.completed"],
        JobStatus.DEAD_LETTERED: ["job.created", "job.started", "job.failed", "job.dead_lettered"],
    }

    def all_events() -> dict[str, list[dict[str, Any]]]:
        events = {i: api.get(f"/read/jobs/{i}/events").json() for _, i in submitted}
        done = all(e and e[-1]["event_type"] in ("job.completed", "job.dead_lettered") for e in events.values())
        return events if done else {}

    events = wait_for(all_events, "three events per job")

    for job, job_id in submitted:
        evs = events[job_id]
        assert [e["event_type"] for e in evs] == lifecycles[expected(job)[0]]
        assert [e["payload"]["version"] for e in evs] == list(range(len(evs)))
        assert all(e["payload"]["job_id"] == job_id for e in evs)


def test_stats_equal_the_postgresql_truth(api, submitted, truth):
    stats = stats_settle(api, truth, "the cached stats to equal the job store")

    assert stats["total_jobs"] >= len(submitted)
    assert stats["dead_lettered"] == sum(1 for j, _ in submitted if expected(j)[0] is JobStatus.DEAD_LETTERED)


def test_unknown_type_is_422_listing_known_types(api):
    r = api.post("/api/jobs", json={"type": "teleport", "payload": {}})

    assert r.status_code == 422
    err = r.json()["error"]
    assert err["details"][0]["loc"] == ["body", "type"]
    assert all(t in err["message"] for t in ("hash", "primes", "sleep", "monte_carlo_pi"))


def test_batch_with_one_bad_job_stores_nothing(api, truth):
    before = sum(truth.jobs.counts()[0].values())
    jobs = [{"type": "hash", "payload": {"data": "ok"}}, {"type": "primes", "payload": {"limit": -5}}]

    r = api.post("/api/jobs/batch", json={"jobs": jobs})

    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == ["body", "jobs", 1, "payload", "limit"]
    assert sum(truth.jobs.counts()[0].values()) == before


def test_malformed_json_is_400(api):
    r = api.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"})

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"


def test_unknown_job_is_404_json(api):
    r = api.get(f"/read/jobs/{uuid.uuid4()}")

    assert r.status_code == 404
    assert r.json()["error"]["details"][0]["loc"] == ["path", "job_id"]


def test_correlation_id_is_honoured_and_echoed(api):
    r = api.post("/api/jobs", json={"type": "hash", "payload": {"data": "c"}}, headers={"X-Correlation-Id": "trace-7"})

    assert r.status_code == 202
    assert r.headers["X-Correlation-Id"] == "trace-7" == r.json()["correlation_id"]
    assert api.get(f"/read/jobs/{r.json()['job_id']}").json()["correlation_id"] == "trace-7"


def test_repeated_idempotency_key_returns_the_original_job(api):
    body = {"type": "hash", "payload": {"data": "once"}, "idempotency_key": f"idem-{uuid.uuid4()}"}

    first, second = api.post("/api/jobs", json=body), api.post("/api/jobs", json=body)

    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["job_id"] == second.json()["job_id"]


def test_job_types_list_each_type_with_its_schema(api):
    types = {t["type"]: t for t in api.get("/api/job-types").json()}

    assert set(types) >= {"hash", "primes", "sleep", "monte_carlo_pi"}
    assert "limit" in types["primes"]["payload_schema"]["properties"]


def accepted(api: httpx.Client, job: dict[str, Any]) -> str:
    r = api.post("/api/jobs", json=job)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def test_a_job_asks_for_resources_within_its_types_limits_and_its_attempts_say_where_they_ran(api):
    types = {t["type"]: t for t in api.get("/api/job-types").json()}
    assert types["primes"]["resources"]["cpus"] == 1 and types["primes"]["max_resources"]["cpus"] == 4
    assert types["noop"]["resources"] is None and types["sleep"]["resources"]["cpus"] < 1

    heavy = accepted(api, {"type": "primes", "payload": {"limit": 5000}, "resources": {"cpus": 2}})
    light = accepted(api, {"type": "noop", "payload": {}})
    jobs = wait_for(lambda: final_jobs(api, [heavy, light]), "both jobs final", 120)

    assert jobs[heavy]["resources"] == {"cpus": 2, "memory_mib": 0, "gpus": 0, "custom": {}}
    assert jobs[light]["resources"] is None
    processors = actor_pids("ProcessorActor")
    [ran] = jobs[heavy]["attempt_history"]  # in a Ray task: another process than the processor that took it
    assert ran["node"] and ran["waiting"] is None and int(ran["executor"].split("@")[0]) not in processors
    [here] = jobs[light]["attempt_history"]  # inline: in the processor itself
    assert here["node"] == ran["node"] and here["executor"].split("@")[0] == here["worker"].rsplit(":", 1)[1]


RESOURCES = ["body", "resources"]


@pytest.mark.parametrize(
    ("job", "loc"),
    [
        ({"type": "primes", "resources": {"cpus": 5}}, [*RESOURCES, "cpus"]),
        ({"type": "sleep", "resources": {"memory_mib": 2048}}, [*RESOURCES, "memory_mib"]),
        ({"type": "primes", "resources": {"custom": {"ssd": 1}}}, [*RESOURCES, "custom", "ssd"]),
        ({"type": "noop", "payload": {}, "resources": {"cpus": 1}}, RESOURCES),
        ({"type": "primes", "resources": {"cpus": -1}}, [*RESOURCES, "cpus"]),
        ({"type": "primes", "resources": {"custom": {"GPU": 1}}}, [*RESOURCES, "custom"]),
    ],
)
def test_resources_beyond_a_types_limits_are_422_naming_the_field(api, truth, job, loc):
    before = sum(truth.jobs.counts()[0].values())

    r = api.post("/api/jobs", json={"payload": {"limit": 10}, **job})

    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["loc"] == loc
    assert sum(truth.jobs.counts()[0].values()) == before


def test_list_filters_and_pages(api, submitted):
    first = api.get("/read/jobs", params={"type": "primes", "limit": 25}).json()
    second = api.get("/read/jobs", params={"type": "primes", "limit": 25, "cursor": first["next_cursor"]}).json()

    ids = [j["id"] for j in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 50
    assert all(j["type"] == "primes" for j in first["items"] + second["items"])
    assert len(api.get("/read/jobs/recent").json()["items"]) == 20
    assert api.get("/read/jobs", params={"status": "SOMETIMES"}).status_code == 422


def test_health_readiness_and_openapi(api):
    for app in ("api", "read"):
        assert api.get(f"/{app}/healthz").json() == {"status": "ok"}
        assert api.get(f"/{app}/readyz").status_code == 200
        assert api.get(f"/{app}/openapi.json").json()["info"]["title"].startswith("Observatory")


def empty_the_cache(mode: tuple[str, Settings]) -> None:
    name, s = mode
    if name == "real":
        r = redis.Redis.from_url(s.redis_url)
        r.delete(*r.keys(f"{s.namespace}:*"))
    else:
        with sqlite3.connect(s.embedded_dir / "counters.sqlite3") as conn:
            conn.executescript("DELETE FROM counts; DELETE FROM job_state; DELETE FROM last_event; DELETE FROM meta;")


def test_stats_stay_right_when_the_cache_is_emptied_and_come_back_from_it(api, mode, truth):
    wait_for(lambda: settled(api, truth), "earlier jobs and their events settled", 120)  # none refill the cache
    empty_the_cache(mode)
    counts, _ = truth.jobs.counts()

    stats = api.get("/read/stats").json()

    # From the store until the read model's keeper has rebuilt the cache (within seconds): right either way.
    assert stats["source"] in ("store", "cache") and stats["total_jobs"] == sum(counts.values()), stats
    stats_settle(api, truth, "the cache rebuilt by itself", 60)


def all_alive(api: httpx.Client, processors: int, aggregators: int) -> dict[str, Any] | None:
    r = api.get("/read/workers")
    assert r.status_code == 200, r.text
    view = r.json()
    actors = view["workers"]["actors"]
    counted = len(actors) == processors + aggregators and view["workers"]["actual"] == processors
    return view if counted and all(a["state"] == "alive" for a in actors) else None


def handled(api: httpx.Client, kind: str) -> int:
    return sum(a["handled"] for a in api.get("/read/workers").json()["workers"]["actors"] if a["kind"] == kind)


def test_workers_lists_the_configured_actors_alive_on_listed_nodes_and_counts_their_work(api, submitted):
    processors, aggregators = workers_arg("processors"), workers_arg("aggregators")
    wait_for(lambda: final_jobs(api, [i for _, i in submitted]), "the workload done")

    view = wait_for(lambda: all_alive(api, processors, aggregators), "every actor alive", 60)

    w, nodes = view["workers"], {n["node_id"]: n for n in view["nodes"]}
    assert (w["desired"], w["actual"], w["min"], w["max"], w["aggregators"]) == (processors,) * 4 + (aggregators,)
    assert sorted(a["kind"] for a in w["actors"]) == ["aggregator"] * aggregators + ["processor"] * processors
    assert {a["pid"] for a in w["actors"] if a["kind"] == "processor"} == actor_pids("ProcessorActor")
    assert {a["pid"] for a in w["actors"] if a["kind"] == "aggregator"} == actor_pids("AggregatorActor")
    # The observatory's actors are services, not niced like Ray's batch workers (serve_ingress.WORKER_ENV).
    assert {os.getpriority(os.PRIO_PROCESS, a["pid"]) for a in w["actors"]} == {0}
    # Serve's controller loops every 0.5 s, not 0.1 (serve_ingress.CONTROLLER_ENV): the raylet has it from
    # `ray start`, and the workers it starts (the controller's among them) inherit it. A raylet is a C++
    # process, so its /proc environ is still the one it started with (a Ray worker's is overwritten by its title).
    raylets = {parent_pid(a["pid"]) for a in w["actors"]}  # this cluster's: Ray's workers are the raylet's children
    assert {process_name(p) for p in raylets} == {"raylet"}
    for raylet in raylets:
        with open(f"/proc/{raylet}/environ", "rb") as f:
            assert b"RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.5" in f.read().split(b"\0")
    for a in w["actors"]:
        node = nodes[a["node_id"]]  # on a node Ray lists, alive, which names it
        assert node["alive"] and a["name"] in node["actors"] and a["node_ip"] == node["address"], (a, node)
        assert a["last_seen"] is not None and a["restarts"] == 0 and a["handled"] is not None
    # Each job handled at least once: the count comes with the supervisor's next look (every check_interval_s),
    # and a processor counts a batch only after its acks, which follow the commit that made the jobs final.
    wait_for(lambda: handled(api, "processor") >= len(submitted), "every job counted as handled", 30)
    head = next(n for n in view["nodes"] if n["is_head"])
    assert head["resources"]["CPU"] == 4 and head["resources"]["memory"] > 0  # the loopback head: --num-cpus 4

    jobs, events = handled(api, "processor"), handled(api, "aggregator")
    r = api.post("/api/jobs/batch", json={"jobs": [{"type": "hash", "payload": {"data": "w"}}] * 10})
    ids = [a["job_id"] for a in r.json()["accepted"]]
    wait_for(lambda: final_jobs(api, ids), "the new jobs done", 120)

    wait_for(lambda: handled(api, "processor") >= jobs + 10, "the processors' handled count to grow", 30)
    # created, started, completed: three events per job folded in by the aggregators
    wait_for(lambda: handled(api, "aggregator") >= events + 30, "the aggregators' handled count to grow", 30)


def test_supervisor_recreates_a_killed_processor_and_jobs_still_complete(api):
    before = actor_pids("ProcessorActor")
    assert len(before) == 2
    victim = min(before)

    os.kill(victim, signal.SIGKILL)

    wait_for(lambda: (p := actor_pids("ProcessorActor")) and len(p) == 2 and victim not in p, "a new processor", 60)
    r = api.post("/api/jobs/batch", json={"jobs": [{"type": "primes", "payload": {"limit": 500}}] * 10})
    ids = [a["job_id"] for a in r.json()["accepted"]]
    jobs = wait_for(lambda: final_jobs(api, ids), "jobs after the restart", 120)
    assert {j["status"] for j in jobs.values()} == {"COMPLETED"}
