"""A lost stats cache heals by itself, in both modes: the counters are wiped in the middle of a submission
run, and without any command `/read/stats` equals the job store again, having never answered from the
partial cache in between. Then `observatory replay --verify` rebuilds them on request."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
import redis
from redis import Redis

from tests.cluster import BIN
from tests.helpers import settled, stats_match_the_store, stats_settle, wait_for

pytestmark = pytest.mark.e2e

JOBS, BATCH, WIPE_AFTER = 300, 10, 100
HEALED_WITHIN_S = 30
STEADY_JOBS, FINAL_TTL_S = 20_000, 2
CLUSTER_ENV = {"OBSERVATORY_FINAL_STATE_TTL_S": str(FINAL_TTL_S)}  # finished jobs are forgotten at once


def wipe(mode: tuple[str, Any], truth) -> None:
    """What losing the cache looks like: every key of the namespace gone (Redis), every counter row gone
    (embedded)."""
    name, settings = mode
    if name == "real":
        r: Redis = redis.Redis.from_url(settings.redis_url)
        keys = list(r.scan_iter(f"{settings.namespace}:*"))
        assert keys
        r.delete(*keys)
        r.close()
    else:
        with truth.counters._db.write() as conn:
            for table in ("job_state", "counts", "last_event", "meta"):
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names


def folded(truth) -> int:
    """Jobs the stats cache counts now, read from the counters themselves (0 while incomplete)."""
    cached = truth.counters.stats()
    return cached.total_jobs if cached else 0


def test_wiped_counters_heal_by_themselves_and_are_never_served_partial(api, mode, truth):
    base = api.base_url
    headers = dict(api.headers)
    answers: list[tuple[float, dict[str, Any]]] = []
    done = threading.Event()
    wiped: dict[str, float] = {}

    def poll() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            while not done.is_set():
                asked = time.monotonic()  # when the request left: an answer asked before the wipe is not judged
                answers.append((asked, c.get("/read/stats").json()))
                time.sleep(0.2)

    poller = threading.Thread(target=poll)
    poller.start()
    ids: list[str] = []
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            for i in range(JOBS // BATCH):
                jobs = [{"type": "hash", "payload": {"data": f"heal-{i}-{j}", "rounds": 1}} for j in range(BATCH)]
                r = c.post("/api/jobs/batch", json={"jobs": jobs})
                assert r.status_code == 202, r.text
                ids += [a["job_id"] for a in r.json()["accepted"]]
                if len(ids) == WIPE_AFTER:
                    # The aggregators first fold every stored job (they may still be starting, or behind on a
                    # busy host): then the cache holds all of them, and a rebuild that misses any shows.
                    wiped["folded"] = wait_for(
                        lambda: (n := folded(truth)) == sum(truth.jobs.counts()[0].values()) and n,
                        "the cache counting every stored job before the wipe",
                        60,
                        lambda: f"cache {folded(truth)}, store {sum(truth.jobs.counts()[0].values())}",
                    )
                    wipe(mode, truth)
                    wiped["at"] = time.monotonic()
                time.sleep(0.25)
        healed = stats_settle(api, truth, "the stats to equal the job store", 120)
    finally:
        done.set()
        poller.join()
    assert healed["total_jobs"] >= JOBS
    after = [(t, a) for t, a in answers if t > wiped["at"]]
    served = [a for _, a in after if a["source"] == "cache"]
    assert served, "the cache never came back while the run went on"
    # A complete cache counts every job it had folded before the wipe (their events are in the event store);
    # the counters rebuilt by the aggregators alone after the wipe count only the newer ones.
    partial = [a["total_jobs"] for a in served if a["total_jobs"] < wiped["folded"]]
    assert not partial, f"the partial cache was served as source=cache: {partial[:5]} < {wiped['folded']}"
    first_cache = min(t for t, a in after if a["source"] == "cache")
    assert first_cache - wiped["at"] <= HEALED_WITHIN_S, first_cache - wiped["at"]


def remembered(mode: tuple[str, Any], truth) -> int:
    """Jobs the stats cache holds a state for (embedded: rows not yet expired; expired ones are purged with
    the next write within a minute)."""
    name, settings = mode
    if name == "real":
        r: Redis = redis.Redis.from_url(settings.redis_url)
        try:
            return sum(1 for _ in r.scan_iter(f"{settings.namespace}:job:*", count=1000))
        finally:
            r.close()
    with truth.counters._db.read() as conn:
        return conn.execute(
            "SELECT count(*) FROM job_state WHERE expires IS NULL OR expires >= ?", (time.time(),)
        ).fetchone()[0]


def submit_all(api: httpx.Client, jobs: list[dict[str, Any]], batch: int) -> None:
    """Batches as fast as the rate limit lets them in (429: wait the Retry-After it gives)."""
    for i in range(0, len(jobs), batch):
        while True:
            r = api.post("/api/jobs/batch", json={"jobs": jobs[i : i + batch]})
            if r.status_code != 429:
                break
            time.sleep(float(r.headers["retry-after"]))
        assert r.status_code == 202, r.text


def test_after_20000_jobs_the_cache_holds_what_unfinished_jobs_need_and_stats_are_exact(api, mode, truth):
    before = sum(truth.jobs.counts()[0].values())
    submit_all(api, [{"type": "noop", "payload": {}} for _ in range(STEADY_JOBS)], 1000)
    stats = wait_for(
        lambda: (
            (s := stats_match_the_store(api, truth))
            and s["total_jobs"] == before + STEADY_JOBS
            and not (s["pending"] or s["running"] or s["retrying"])
            and s
        ),
        "20 000 jobs finished and counted exactly",
        600,
    )
    keep = stats["dead_lettered"]  # a dead-lettered job may be requeued: remembered for as long
    wait_for(lambda: remembered(mode, truth) <= keep, "finished jobs forgotten by the cache", 30)
    assert stats_match_the_store(api, truth), "forgetting finished jobs changed the stats"


def test_replay_verify_rebuilds_on_request_and_compares_with_the_store(api, mode, truth, tmp_path):
    name, settings = mode
    env = {
        "OBSERVATORY_NAMESPACE": settings.namespace,
        "OBSERVATORY_DATA_DIR": str(settings.data_dir),
        "PATH": "/usr/bin:/bin",
    }
    if name == "real":
        env |= {
            "AMQP_URL": settings.amqp_url,
            "POSTGRES_DSN": settings.postgres_dsn,
            "MONGO_URL": settings.mongo_url,
            "REDIS_URL": settings.redis_url,
        }
    wait_for(lambda: settled(api, truth), "a settled pipeline (the module's other tests may leave jobs moving)", 120)
    run = subprocess.run(
        [str(BIN / "observatory"), "replay", "--verify"], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rebuilt the stats from" in run.stdout and "equal the job store" in run.stdout
    assert stats_match_the_store(api, truth)
