"""Lifecycle and delivery guarantees, end to end, in both modes (fixtures shared with test_e2e)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pika
import pytest

from contracts import Job, JobStatus
from observatory.events import producer, work_message
from observatory.ports import NewJob
from observatory.topology import routes
from tests.cluster import ROOT
from tests.helpers import actor_pids, alive, final_jobs, handler_pids, stats_settle, wait_for

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
    # Base 0.5 s doubling with ±20 % jitter: the delays lie in [0.4, 0.6] and [0.8, 1.2] s. A retry never
    # runs early, so the lower bounds show the growth; the broker may add up to 25 % plus some delivery time.
    assert 0.4 <= gaps[0] < 0.6 * 1.25 + 1.5 and 0.8 <= gaps[1] < 1.2 * 1.25 + 1.5, gaps
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
    job_id = submit(api, "sleep", {"seconds": 120}, timeout_s=4, max_attempts=1)
    handlers = wait_for(lambda: handler_pids(job_id), "the handler's process", 30)

    dead = until_status(api, job_id, "DEAD_LETTERED", 60)

    assert "timed out after 4s" in dead["error"]
    wait_for(lambda: not any(alive(p) for p in handlers | handler_pids(job_id)), "the handler's process gone", 15)
    assert time.monotonic() - started < 30


def test_cancel_a_pending_and_a_running_job(api):
    busy = [submit(api, "sleep", {"seconds": 60}) for _ in range(8)]  # fill every processor slot
    wait_for(lambda: all(job(api, i)["status"] == "RUNNING" for i in busy), "all slots busy", 60)
    handlers = wait_for(
        lambda: (found := {i: handler_pids(i) for i in busy}) and all(found.values()) and found,
        "every handler's process",
        30,
    )
    pending = submit(api, "hash", {"data": "never"})

    r = api.post(f"/api/jobs/{pending}/cancel")
    cancelled_running = [api.post(f"/api/jobs/{i}/cancel") for i in busy]

    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    assert {c.json()["status"] for c in cancelled_running} == {"CANCELLED"}
    # The handlers are stopped for real: their processes are gone, not left sleeping in the background.
    pids = set().union(*handlers.values())
    wait_for(lambda: not any(alive(p) for p in pids), "the cancelled handlers' processes gone", 20)
    assert not any(handler_pids(i) for i in busy)
    marker = submit(api, "hash", {"data": "after"})  # runs only once the cancelled handlers freed the slots
    until_status(api, marker, "COMPLETED", 30)
    assert job(api, pending)["attempts"] == 0 and job(api, pending)["status"] == "CANCELLED"
    assert all(job(api, i)["status"] == "CANCELLED" for i in busy)
    assert api.post(f"/api/jobs/{pending}/cancel").status_code == 409
    assert api.post(f"/api/jobs/{uuid.uuid4()}/cancel").status_code == 404
    assert event_types(api, busy[0], "job.cancelled") == ["job.created", "job.started", "job.cancelled"]


def _publish_raw(mode: tuple[str, Any], body: bytes, key: str = "job.created") -> None:
    """Put a message on the bus as another producer would: bytes, routed by `key` (the embedded bus has no
    exchange: the message goes into each queue that the key reaches)."""
    name, s = mode
    if name == "real":
        conn = pika.BlockingConnection(pika.URLParameters(s.amqp_url))
        conn.channel().basic_publish(s.namespace, key, body)
        conn.close()
    else:
        with sqlite3.connect(s.embedded_dir / "bus.sqlite3") as db:
            for queue in routes(key):
                db.execute("INSERT INTO messages (queue, body, available_us) VALUES (?, ?, 0)", (queue, body))


def test_poison_message_on_the_jobs_queue_goes_to_the_dlq(api, mode):
    marker = f"poison-{uuid.uuid4()}"
    _publish_raw(mode, marker.encode())

    def entry() -> dict[str, Any] | None:
        return next((d for d in api.get("/read/dlq").json()["items"] if d["message"] == marker), None)

    found = wait_for(entry, "the poison message in the DLQ", 60)
    assert found["job_id"] is None and found["reason"].startswith("unreadable message")


def _from_a_newer_producer(job: Job, contract_version: str) -> bytes:
    """The job's job.created message as a producer of `contract_version` writes it, with a field added to
    the envelope and one to the payload."""
    message = json.loads(work_message(job, producer("future-gateway")).model_dump_json())
    message |= {"contract_version": contract_version, "trace_flags": "01"}
    message["payload"]["priority"] = 5
    return json.dumps(message).encode()


def test_a_newer_minor_version_is_processed_and_another_major_is_dead_lettered(api, mode, truth):
    # A stored job (marked published: only the message built here carries its work), sent as contract 1.9.
    new = NewJob(uuid.uuid4(), "hash", {"data": "from 1.9", "rounds": 1}, "cv-1.9")
    (created,) = truth.jobs.create([new])
    truth.jobs.mark_published([new.id])
    newer = str(new.id)
    # A 2.0 message: its job is not even stored, as nothing of it may be trusted.
    other = created.job.model_copy(update={"id": uuid.uuid4()})
    other_body = _from_a_newer_producer(other, "2.0")
    # And a 2.0 job.completed, which only the aggregators receive.
    completed = json.loads(other_body) | {"event_type": "job.completed", "event_id": str(uuid.uuid4())}
    completed_body = json.dumps(completed).encode()
    _publish_raw(mode, _from_a_newer_producer(created.job, "1.9"))
    _publish_raw(mode, other_body)
    _publish_raw(mode, completed_body, "job.completed")

    done = wait_for(lambda: final_jobs(api, [newer]), "the job of the 1.9 message final", 60)
    assert done[newer]["status"] == "COMPLETED" and done[newer]["result"]["rounds"] == 1
    assert event_types(api, newer, "job.completed") == ["job.created", "job.started", "job.completed"]

    def entries() -> list[dict[str, Any]] | None:
        kept = [d for d in api.get("/read/dlq").json()["items"] if d["message"] in texts]
        return kept if {d["message"] for d in kept} == texts else None

    texts = {other_body.decode(), completed_body.decode()}
    found = wait_for(entries, "both 2.0 messages in the DLQ", 60)
    assert len(found) == 2, found  # each kept once: by the processors, or by the aggregators
    for entry in found:
        assert entry["job_id"] is None and "unknown major version" in entry["reason"], entry


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


def _in_flight_on_a_live_processor(api: httpx.Client, ids: set[str], spent: set[str]) -> tuple[str, str, int] | None:
    """(job id, worker, pid) of a job of `ids` running right now on a processor process that is alive."""
    live = actor_pids("ProcessorActor")
    for j in api.get("/read/jobs", params={"status": "RUNNING", "limit": 500}).json()["items"]:
        if j["id"] not in ids:
            continue
        worker = job(api, j["id"])["attempt_history"][-1]["worker"]  # processor-N:<pid>
        pid = int(worker.rsplit(":", 1)[1])
        if pid in live and worker not in spent:
            return j["id"], worker, pid
    return None


def test_sigkilled_processors_mid_job_still_complete_every_job_exactly_once(api, truth):
    r = api.post("/api/jobs/batch", json={"jobs": [{"type": "sleep", "payload": {"seconds": 1.0}}] * 80})
    ids = [a["job_id"] for a in r.json()["accepted"]]

    killed: dict[str, str] = {}  # job id -> the worker that was SIGKILLed while running it
    for _ in range(3):  # kill a processor in the middle of a job, three times
        job_id, worker, pid = wait_for(
            lambda: _in_flight_on_a_live_processor(api, set(ids) - set(killed), set(killed.values())),
            "a job in flight on a live processor",
            90,
        )
        os.kill(pid, signal.SIGKILL)
        killed[job_id] = worker

    jobs = wait_for(lambda: final_jobs(api, ids), "every job final", 240)
    assert len(killed) == 3 and {j["status"] for j in jobs.values()} == {"COMPLETED"}
    for worker in killed.values():  # each kill interrupted a job, which then ran again elsewhere to its end
        cut = [(j, a) for j in jobs.values() for a in j["attempt_history"] if a["worker"] == worker]
        assert any(a["finished_at"] is None for _, a in cut), (worker, cut)
        for j, a in cut:
            tries = j["attempt_history"]
            assert a["finished_at"] is not None or (j["attempts"] >= 2 and tries[-1]["worker"] != worker)
    for i in ids:
        finished = [a for a in jobs[i]["attempt_history"] if a["finished_at"] is not None]
        assert len(finished) == 1 and finished[0]["error"] is None, jobs[i]["attempt_history"]
        types = event_types(api, i, "job.completed")
        assert types[0] == "job.created" and types.count("job.completed") == 1
    stats_settle(api, truth, "stats equal to the job store", 60)


def _running_on(truth, live: set[int]) -> tuple[int, list[uuid.UUID]] | None:
    """A live processor's pid, and the noop jobs it holds RUNNING right now (in the middle of a micro-batch)."""
    holding: dict[int, list[uuid.UUID]] = {}
    for j in truth.jobs.list(JobStatus.RUNNING, "noop", 100, None).items:
        tries = truth.jobs.attempts(j.id)
        if tries and (pid := int(tries[-1].worker.rsplit(":", 1)[1])) in live:
            holding.setdefault(pid, []).append(j.id)
    return max(holding.items(), key=lambda kv: len(kv[1])) if holding else None


def _committed(truth, live: set[int]) -> set[int]:
    """The live processors that finished one of the latest completed noop jobs: a processor that has just
    started (the supervisor's replacement, or one still warming up) can be in the middle of its first batch."""
    recent = truth.jobs.list(JobStatus.COMPLETED, "noop", 100, None).items
    finished = {int(a.worker.rsplit(":", 1)[1]) for j in recent for a in truth.jobs.attempts(j.id) if a.finished_at}
    return live & finished


def _interrupted(truth, pid: int, job_ids: list[uuid.UUID]) -> bool | None:
    """Whether the dead processor `pid` left one of these jobs' attempts open for good; None while that is not
    known yet. A statement it sent just before it died may still commit and close its attempts, so an open one
    counts only once another processor has started the job again (completions close the latest attempt only)."""
    tries = [truth.jobs.attempts(j) for j in job_ids]
    if any(t[-1].worker.endswith(f":{pid}") and t[-1].finished_at is None for t in tries):
        return None
    return any(a.worker.endswith(f":{pid}") and a.finished_at is None for t in tries for a in t)


def test_a_processor_killed_mid_micro_batch_repeats_and_loses_nothing(api, truth):
    ids: list[str] = []
    victims: list[int] = []
    for _ in range(8):  # a kill can land between two batches; then try again on the next processor
        # Work for this try, looked at between its later batches (the first ones give the processors batches
        # to commit before the kill): at ~1 000 no-op jobs/s a backlog submitted whole can be done before the
        # first look (the last try's may be done already).
        in_flight = None
        for n in range(20):
            r = api.post("/api/jobs/batch", json={"jobs": [{"type": "noop", "payload": {}}] * 500})
            ids += [a["job_id"] for a in r.json()["accepted"]]
            if n >= 4 and (in_flight := _running_on(truth, _committed(truth, actor_pids("ProcessorActor")))):
                break
        victim, held = in_flight or wait_for(
            lambda: _running_on(truth, _committed(truth, actor_pids("ProcessorActor"))),
            "a batch in flight on a processor that has committed one before",
            60,
        )
        os.kill(victim, signal.SIGKILL)
        victims.append(victim)
        wait_for(lambda v=victim, h=held: _interrupted(truth, v, h) is not None, "the kill's outcome known", 120)
        if _interrupted(truth, victim, held):
            break

    def noop_counts() -> dict[JobStatus, int]:
        return {s: n for (t, s), n in truth.jobs.counts()[0].items() if t == "noop" and n}

    wait_for(lambda: all(s.is_final for s in noop_counts()), "every job final", 300)
    assert noop_counts() == {JobStatus.COMPLETED: len(ids)}
    tries = {i: truth.jobs.attempts(uuid.UUID(i)) for i in ids}
    by_victims = [a for i in ids for a in tries[i] if int(a.worker.rsplit(":", 1)[1]) in victims]
    assert any(a.finished_at is None for a in by_victims), "no kill interrupted a batch"
    assert any(a.finished_at is not None for a in by_victims), "the victims committed nothing before"
    for i in ids:  # each job ran to an end exactly once, whether it was re-run or only re-acknowledged
        assert sum(a.finished_at is not None for a in tries[i]) == 1, tries[i]
    stats_settle(api, truth, "stats equal to the job store", 120)


def services(action: str, server: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), action, server], check=True, timeout=300)


@pytest.mark.parametrize("mode", ["real"], indirect=True)  # the embedded mode has no servers to stop
def test_broker_and_database_outages_lose_nothing(api, mode, truth):
    """The broker, then the database, is stopped while clients keep submitting, and stays down until the
    outage has been seen: jobs accepted while the broker is down (published later by the sweeper), and a
    submission refused with 503 while the database is down. Every answer is judged in this thread. One job
    accepted while the broker is down is cancelled before it comes back: no processor ever meets that job,
    and it is still counted and has its history."""
    rounds: list[tuple[float, int, int, str, str | None]] = []  # (when, readyz, submit status, readyz body, id)
    marks: dict[str, float] = {}
    cancelled: list[str] = []

    def accepted_since(t0: float, bus_down: bool = False) -> int:
        down = [(t, c) for t, ready, c, body, _ in rounds if not bus_down or (ready == 503 and '["bus"]' in body)]
        return sum(1 for t, c in down if t > t0 and c == 202)

    def refused_and_not_ready(t0: float) -> bool:
        later = [(ready, c, body) for t, ready, c, body, _ in rounds if t > t0]
        return any(c == 503 for _, c, _ in later) and any(r == 503 and '["jobs"]' in b for r, _, b in later)

    def outage(server: str, seen: Any, what: str) -> None:
        wait_for(lambda t0=time.monotonic(): accepted_since(t0) >= 3, f"jobs accepted before stopping {server}", 60)
        marks[server] = time.monotonic()
        services("stop", server)
        try:
            wait_for(seen, what, 120)
        finally:
            services("start", server)

    def drill() -> None:
        outage("rabbitmq", lambda: accepted_since(marks["rabbitmq"], bus_down=True) >= 3, "jobs accepted, bus down")
        outage("postgresql", lambda: refused_and_not_ready(marks["postgresql"]), "a 503 and readyz naming jobs")
        marks["done"] = time.monotonic()

    with ThreadPoolExecutor(1) as pool:
        drilling = pool.submit(drill)
        while not (drilling.done() and (drilling.exception() or accepted_since(marks["done"]) >= 5)):
            ready = api.get("/api/readyz", timeout=30)
            r = api.post("/api/jobs", json={"type": "primes", "payload": {"limit": 2000}}, timeout=30)
            rounds.append((time.monotonic(), ready.status_code, r.status_code, ready.text, r.json().get("job_id")))
            if not cancelled and r.status_code == 202 and ready.status_code == 503 and '["bus"]' in ready.text:
                cancelled.append(r.json()["job_id"])  # the broker stays down until two more are accepted
                c = api.post(f"/api/jobs/{cancelled[0]}/cancel", timeout=30)
                assert c.status_code == 200 and c.json()["status"] == "CANCELLED", c.text
            time.sleep(0.05)  # pacing: a steady trickle of submissions through both outages
        drilling.result()  # a failed stop or start fails the test

    assert {c for *_, c, _b, _i in rounds} == {202, 503}  # refused while down, never a 5xx, an error or a hang
    assert {ready for _, ready, *_ in rounds} == {200, 503}
    assert any(ready == 503 and '["jobs"]' in body for _, ready, _c, body, _i in rounds)
    ids = [i for *_, c, _b, i in rounds if c == 202 and i and i not in cancelled]
    jobs = wait_for(lambda: final_jobs(api, ids), "every accepted job final", 240)
    assert {j["status"] for j in jobs.values()} == {"COMPLETED"}
    assert cancelled, "no job was accepted while the broker was down"
    history = wait_for(
        lambda: len(h := api.get(f"/read/jobs/{cancelled[0]}/events").json()) == 2 and h,
        "the cancelled job's events, from the sweeper",
        120,
    )
    assert [(e["event_type"], e["payload"]["version"]) for e in history] == [("job.created", 0), ("job.cancelled", 1)]
    assert api.get(f"/read/jobs/{cancelled[0]}").json()["status"] == "CANCELLED"
    stats_settle(api, truth, "stats equal to the job store", 120)


def test_stats_equal_the_store_in_every_status_after_the_lifecycle_tests(api, truth):
    """Cancelled, retried, dead-lettered and requeued jobs are counted exactly like the store has them."""
    counts = truth.jobs.counts()[0]
    for status in ("CANCELLED", "DEAD_LETTERED", "COMPLETED"):
        assert any(s.value == status and n for (_, s), n in counts.items()), f"no {status} job to compare"

    stats_settle(api, truth, "stats equal to the job store in every field", 120)
