"""Stop the whole observatory in the middle of a run, start it again: every job finishes, once."""

from __future__ import annotations

import httpx
import pytest

from contracts import JobStatus, Stats
from observatory import backends
from observatory.settings import Settings
from tests.cluster import serve_cluster
from tests.helpers import CONNECTIONS, assert_backends, scratch, settled, tcp_listeners, wait_for

pytestmark = pytest.mark.e2e

JOBS = 40
API_PORT = 8000
HAPROXY_PORTS = {API_PORT, 8404}  # the API, Ray's HAProxy stats page


@pytest.mark.parametrize("mode", ["real", "embedded"])
def test_restart_mid_run_finishes_every_job_and_counts_it_once(mode, settings, tmp_path):
    ns = scratch(f"{settings.namespace}_restart")
    s = Settings(OBSERVATORY_NAMESPACE=ns, OBSERVATORY_DATA_DIR=tmp_path)
    if mode == "embedded":
        s = Settings(OBSERVATORY_NAMESPACE=ns, OBSERVATORY_DATA_DIR=tmp_path, **dict.fromkeys(CONNECTIONS))
    env = {"OBSERVATORY_NAMESPACE": ns, "OBSERVATORY_DATA_DIR": str(tmp_path)}
    drop = CONNECTIONS if mode == "embedded" else ()
    truth = backends.build(s)

    # Given a run in progress
    with serve_cluster(env, drop, hard_stop=True) as url:
        assert_backends(httpx.Client(base_url=url), real=mode == "real")
        body = {"jobs": [{"type": "sleep", "payload": {"seconds": 2.0}}] * JOBS}
        ids = [a["job_id"] for a in httpx.post(f"{url}/api/jobs/batch", json=body, timeout=60).json()["accepted"]]
        wait_for(lambda: truth.jobs.counts()[0].get(("sleep", JobStatus.COMPLETED), 0) >= 5, "some jobs done", 60)
        # (HTTP comes in through HAProxy, and every listener it opens is on loopback)
        assert HAPROXY_PORTS & {port for _, port in tcp_listeners()}
        assert {(ip, port) for ip, port in tcp_listeners() if port in HAPROXY_PORTS} <= {
            ("127.0.0.1", p) for p in HAPROXY_PORTS
        }
    # When every Ray process was killed in the middle (HAProxy with them: the API port is free again)
    wait_for(lambda: API_PORT not in {port for _, port in tcp_listeners()}, "port 8000 free after a hard stop", 15)
    counts, _ = truth.jobs.counts()
    assert counts.get(("sleep", JobStatus.COMPLETED), 0) < JOBS, "stopped too late to test anything"

    # Then after a start with the same data, every job finishes and is counted once
    with serve_cluster(env, drop) as url, httpx.Client(base_url=url, timeout=60) as api:
        wait_for(lambda: all(api.get(f"/read/jobs/{i}").json()["status"] == "COMPLETED" for i in ids), "all jobs", 180)
        truth_stats = Stats.from_counts(truth.jobs.counts()[0], None, "store")
        assert truth_stats.total_jobs == truth_stats.completed == JOBS

        # Once every event is folded in (nothing left to arrive late), each job is counted exactly once.
        wait_for(lambda: settled(api, truth), "every event folded into the stats", 120)
        stats = api.get("/read/stats").json()
        assert (stats["total_jobs"], stats["completed"], stats["running"], stats["pending"]) == (JOBS, JOBS, 0, 0)
        for i in ids:
            events = api.get(f"/read/jobs/{i}/events").json()
            assert events[0]["event_type"] == "job.created" and events[-1]["event_type"] == "job.completed"
            assert [e["payload"]["version"] for e in events] == list(range(len(events)))
    truth.close()
