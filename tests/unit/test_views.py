"""The CLI's plain-text views (observatory/views.py)."""

from __future__ import annotations

from observatory import views

STATS = {
    "total_jobs": 4,
    "pending": 0,
    "running": 0,
    "retrying": 0,
    "completed": 3,
    "failed": 0,
    "dead_lettered": 1,
    "cancelled": 0,
    "by_type": {"sleep": {"total": 1, "dead_lettered": 1}, "hash": {"total": 3, "completed": 3}},
    "source": "cache",
}
JOB = {
    "id": "6f1c0c52-0000-4000-8000-000000000001",
    "type": "sleep",
    "status": "DEAD_LETTERED",
    "payload": {"seconds": 0, "fail_probability": 1},
    "result": None,
    "error": "simulated failure",
    "attempts": 2,
    "max_attempts": 2,
    "timeout_s": 300.0,
    "created_at": "2026-11-30T12:00:00+00:00",
    "started_at": "2026-11-30T12:00:00.100000+00:00",
    "finished_at": "2026-11-30T12:00:01.600000+00:00",
    "correlation_id": "c-1",
    "idempotency_key": None,
    "attempt_history": [
        {"number": 1, "worker": "processor-0:11", "started_at": "2026-11-30T12:00:00.100000+00:00",
         "finished_at": "2026-11-30T12:00:00.150000+00:00", "error": "simulated failure"},
        {"number": 2, "worker": "processor-1:12", "started_at": "2026-11-30T12:00:01.500000+00:00",
         "finished_at": "2026-11-30T12:00:01.600000+00:00", "error": "simulated failure"},
    ],
}  # fmt: skip
EVENTS = [
    {"occurred_at": "2026-11-30T12:00:00+00:00", "event_type": "job.created", "producer": {"service": "gateway"}},
    {"occurred_at": "2026-11-30T12:00:00.100000+00:00", "event_type": "job.started", "producer": {"service": "p"}},
    {
        "occurred_at": "2026-11-30T12:00:02.600000+00:00",
        "event_type": "job.dead_lettered",
        "producer": {"service": "p"},
    },
]


def test_status_shows_every_status_so_the_numbers_add_up_and_the_alerts():
    alert = {"severity": "warning", "name": "DeadLetterQueueNotEmpty", "summary": "1 dead letters waiting",
             "since": "2026-11-30T12:00:02+00:00", "source": "read-model"}  # fmt: skip
    lines = views.status_lines(STATS, [alert])
    assert lines[0] == (
        "jobs 4: pending 0, running 0, retrying 0, completed 3, failed 0, dead-lettered 1, cancelled 0  (source: cache)"
    )
    assert "sleep" in lines[2] and "dead-lettered 1" in lines[2]
    assert lines[-2:] == ["alerts 1:", "  [warning] DeadLetterQueueNotEmpty: 1 dead letters waiting "
                          "(since 2026-11-30 12:00:02.000, read-model)"]  # fmt: skip
    assert views.status_lines(STATS, [])[-1] == "alerts: none"


def test_job_is_a_readable_summary_with_attempts_and_timeline():
    text = "\n".join(views.job_lines(JOB, EVENTS))
    assert "  status       DEAD_LETTERED" in text and "attempts     2 of 2" in text
    assert "error: simulated failure" in text and '"fail_probability": 1' in text
    assert "  #1 processor-0:11  2026-11-30 12:00:00.100  50 ms  error: simulated failure" in text
    assert "job.dead_lettered  +2.50 s" in text and "attempts (2):" in text and "events (3):" in text


def test_jobs_and_dlq_lists():
    page = {"items": [JOB], "next_cursor": "abc"}
    lines = views.jobs_lines(page)
    assert lines[1].startswith(JOB["id"]) and "DEAD_LETTERED" in lines[1] and "2/2" in lines[1]
    assert lines[-1] == "more: --cursor abc"
    assert views.jobs_lines({"items": []}) == ["no jobs"]
    letter = {"job_id": None, "job_type": None, "created_at": "2026-11-30T12:00:00+00:00", "reason": "unreadable"}
    assert views.dlq_lines({"items": [letter]})[0].startswith("(unreadable message)")
    assert views.dlq_lines({"items": []}) == ["no dead letters"]
