"""Lifecycle and delivery guarantees, end to end, in both modes (fixtures shared with test_e2e)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from typing import Any

import httpx
import pika
import pytest

from contracts import Stats
from tests.cluster import ROOT
from tests.helpers import actor_pids, final_jobs, wait_for

pytestmark = pytest.mark.e2e


def submit(api: httpx.Client, job_type: str, payload: dict[str, Any], **extra: Any) -> str:
    r = api.post("/api/jobs", json={"type": job_type, "payload": payload, **extra})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    return api.get(f"/read/jobs/{job_id}").json()


def event_types(api: httpx.Client, job_id: str, last: str, timeout_s: float = 60) -> list[str]:
    """The job's event types, once the aggregator has stored its `last` event (it runs behind the store)."""

    def types() -> list[str] | None:
        got = [e["event_type"] for e in api.get(f"/read/jobs/{job_id}/events").json()]
        return got if got and got[-1] == last else None

    return wait_for(types, f"{job_id}'s {last} event", timeout_s)


def until_status(api: httpx.Client, job_id: str, status: str, timeout_s: float = 120) -> dict[str, Any]:
    return wait_for(lambda: (j := job(api, job_id))["status"] == status and j, f"{job_id} {status}", timeout_s)


def test_failing_job_retries_with_growing_delays_then_dead_letters_and_requeues(api):
    job_id = submit(api, "sleep", {"seconds": 0, "fail_probability": 1}, max_attempts=3)

    dead = until_status(api, job_id, "DEAD_LETTERED")

    tries = dead["attempt_history"]
    assert [a["number"] for a in tries] == [1, 2, 3] and all("simulated failure" in a["error"] for a in tries)
    gaps = [_t(b["started_at"]) - _t(a["finished_at"]) for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps[0] > 0.3 and gaps[1] > gaps[0]  # base 0.5 s, doubling, ±20 % jitter
    entries = {d["job_id"]: d for d in api.get("/read/dlq").json()["items"]}
    assert "simulated failure" in entries[job_id]["reason"]
    types = event_types(api, job_id, "job.dead_lettered")
    assert types.count("job.retrying") == 2 and types.count("job.failed") == 3

    r = api.post(f"/api/dlq/{job_id}/requeue")
    assert r.status_code == 200 and r.json()["status"] == "PENDING"
    again = wait_for(
        lambda: (j := job(api, job_id))["status"] == "DEAD_LETTERED" and j["attempts"] == 6 and j,
        "the second round",
        120,
    )
    assert len(again["attempt_history"]) == 6
    assert api.post(f"/api/dlq/{uuid.uuid4()}/requeue").status_code == 404
    assert api.post(f"/api/dlq/{submit(api, 'hash', {'data': 'x'})}/requeue").status_code in (409,)


def _t(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def test_handler_over_its_timeout_is_stopped_and_the_attempt_fails(api):
    started = time.monotonic()
    job_id = submit(api, "sleep", {"seconds": 120}, timeout_s=1, max_attempts=1)

    dead = until_status(api, job_id, "DEAD_LETTERED", 60)

    assert "timed out after 1s" in dead["error"]
    assert time.monotonic() - started < 30


def test_cancel_a_pending_and_a_running_job(api):
    busy = [submit(api, "sleep", {"seconds": 60}) for _ in range(8)]  # fill every processor slot
    wait_for(lambda: all(job(api, i)["status"] == "RUNNING" for i in busy), "all slots busy", 60)
    pending = submit(api, "hash", {"data": "never"})

    r = api.post(f"/api/jobs/{pending}/cancel")
    cancelled_running = [api.post(f"/api/jobs/{i}/cancel") for i in busy]

    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    assert {c.json()["status"] for c in cancelled_running} == {"CANCELLED"}
    marker = submit(api, "hash", {"data": "after"})  # runs only once the cancelled handlers freed the slots
    until_status(api, marker, "COMPLETED", 30)
    assert job(api, pending)["attempts"] == 0 and job(api, pending)["status"] == "CANCELLED"
    assert all(job(api, i)["status"] == "CANCELLED" for i in busy)
    assert api.post(f"/api/jobs/{pending}/cancel").status_code == 409
    assert api.post(f"/api/jobs/{uuid.uuid4()}/cancel").status_code == 404
    assert event_types(api, busy[0], "job.cancelled") == ["job.created", "job.started", "job.cancelled"]


def test_poison_message_on_the_jobs_queue_goes_to_the_dlq(api, mode):
    marker = f"poison-{uuid.uuid4()}"
    name, s = mode
    if name == "real":
        conn = pika.BlockingConnection(pika.URLParameters(s.amqp_url))
        conn.channel().basic_publish(s.namespace, "job.created", marker.encode())
        conn.close()
    else:
        with sqlite3.connect(s.embedded_dir / "bus.sqlite3") as db:
            db.execute("INSERT INTO messages (queue, body, available_us) VALUES ('jobs', ?, 0)", (marker.encode(),))

    def entry() -> dict[str, Any] | None:
        return next((d for d in api.get("/read/dlq").json()["items"] if d["message"] == marker), None)

    found = wait_for(entry, "the poison message in the DLQ", 60)
    assert found["job_id"] is None and found["reason"].startswith("unreadable message")


def test_hostile_input_gets_json_errors(api):
    big = api.post(
        "/api/jobs",
        content=b'{"type": "hash", "payload": {"data": "' + b"x" * (2 << 20) + b'"}}',
        headers={"content-type": "application/json"},
    )
    chunked = api.post(
        "/api/jobs",
        content=iter([b"{" + b" " * 700_000, b" " * 700_000 + b"}"]),
        headers={"content-type": "application/json"},
    )
    wrong = api.post("/api/jobs", json={"type": "hash", "payload": {"data": "x", "rounds": "many"}})
    bad_attempts = api.post("/api/jobs", json={"type": "hash", "payload": {"data": "x"}, "max_attempts": 0})
    not_uuid = api.get("/read/jobs/not-a-uuid")
    nul = api.post("/api/jobs", json={"type": "hash", "payload": {"data": "a\u0000b"}})
    nul_filter = api.get("/read/jobs", params={"type": "a\x00b"})

    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
    assert chunked.status_code == 413
    assert wrong.status_code == 422 and wrong.json()["error"]["details"][0]["loc"] == ["body", "payload", "rounds"]
    assert bad_attempts.status_code == 422 and bad_attempts.json()["error"]["details"][0]["loc"] == [
        "body",
        "max_attempts",
    ]
    assert not_uuid.status_code == 422
    assert nul.status_code in (202, 422) and nul_filter.status_code in (200, 422)  # stored as is, or refused


def test_sigkilled_processors_mid_job_still_complete_every_job_exactly_once(api, truth):
    r = api.post("/api/jobs/batch", json={"jobs": [{"type": "sleep", "payload": {"seconds": 0.5}}] * 60})
    ids = [a["job_id"] for a in r.json()["accepted"]]

    for _ in range(3):  # kill a processor in the middle of its jobs, three times
        time.sleep(1.5)
        victims = sorted(actor_pids("ProcessorActor"))
        if victims:
            os.kill(victims[0], signal.SIGKILL)

    jobs = wait_for(lambda: final_jobs(api, ids), "every job final", 180)
    assert {j["status"] for j in jobs.values()} == {"COMPLETED"}
    for i in ids:
        assert event_types(api, i, "job.completed").count("job.completed") == 1

    def exact() -> bool:
        expected = Stats.from_counts(truth.jobs.counts()[0], None, "store")
        got = api.get("/read/stats").json()
        return got["source"] == "cache" and all(
            got[k] == getattr(expected, k) for k in ("total_jobs", "completed", "running", "pending")
        )

    wait_for(exact, "stats equal to the job store", 60)


@pytest.mark.parametrize("mode", ["real"], indirect=True)  # the embedded mode has no servers to restart
def test_broker_and_database_restarts_lose_nothing(api, mode):
    ids: list[str] = []
    stop = threading.Event()

    def keep_submitting() -> None:
        while not stop.is_set():
            try:
                r = api.post("/api/jobs", json={"type": "primes", "payload": {"limit": 2000}}, timeout=10)
                if r.status_code == 202:
                    ids.append(r.json()["job_id"])
                else:
                    assert r.status_code == 503, r.text  # refused while down: the client knows to retry
            except httpx.HTTPError:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=keep_submitting, daemon=True)
    t.start()
    for server in ("rabbitmq", "postgresql"):
        time.sleep(3)
        subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "restart", server], check=True, timeout=300)
    time.sleep(3)
    stop.set()
    t.join(30)

    assert len(ids) > 20
    jobs = wait_for(lambda: final_jobs(api, ids), "every accepted job final", 240)
    assert {j["status"] for j in jobs.values()} == {"COMPLETED"}
