"""Fixed data for the TUI's snapshot tests: an Api that answers from memory."""

from __future__ import annotations

from typing import Any

from tui.client import ApiError

JOB = {
    "id": "0b7e4c8e-5d7a-4a4e-9c1e-111111111111",
    "type": "hash",
    "status": "COMPLETED",
    "payload": {"data": "abc", "rounds": 2},
    "result": {"sha256": "4f8b42c2", "rounds": 2},
    "error": None,
    "attempts": 1,
    "max_attempts": 3,
    "timeout_s": 300.0,
    "created_at": "2026-11-29T10:00:00+00:00",
    "started_at": "2026-11-29T10:00:00.040000+00:00",
    "finished_at": "2026-11-29T10:00:00.050000+00:00",
    "updated_at": "2026-11-29T10:00:00.050000+00:00",
    "correlation_id": "trace-1",
    "idempotency_key": None,
    "version": 2,
    "attempt_history": [
        {
            "number": 1,
            "worker": "processor-0",
            "started_at": "2026-11-29T10:00:00.040000+00:00",
            "finished_at": "2026-11-29T10:00:00.050000+00:00",
            "error": None,
            "node": "6f1b754058fef18a2afd8c2f9eeae9d427b33b9d8f928699a92b472f",
            "executor": "4242@127.0.0.1",
            "waiting": None,
        }
    ],
    "resources": {"cpus": 1, "memory_mib": 512, "gpus": 0, "custom": {"ssd": 1}},
}
DEAD = {
    **JOB,
    "id": "9d1c2b3a-0000-4000-8000-222222222222",
    "type": "sleep",
    "status": "DEAD_LETTERED",
    "result": None,
    "error": "simulated failure (fail_probability=1.0)",
    "attempts": 3,
}


NODE = "9a55f46ebe4e1863ad25de3791a2bda795b6f5ac7bfc7c6b18916577"
WORKERS = {
    "nodes": [
        {
            "node_id": NODE,
            "address": "127.0.0.1",
            "alive": True,
            "is_head": True,
            "resources": {"CPU": 4.0, "memory": 8 * 2**30, "object_store_memory": 2 * 2**30, "observatory-worker": 1.0},
            "actors": ["processor-0", "aggregator-0"],
        }
    ],
    "workers": {
        "desired": 2,
        "actual": 1,
        "min": 2,
        "max": 2,
        "aggregators": 1,
        "checked_at": "2026-11-29T10:04:59+00:00",
        "actors": [
            {
                "name": "processor-0",
                "kind": "processor",
                "state": "alive",
                "node_id": NODE,
                "node_ip": "127.0.0.1",
                "pid": 1466,
                "connected": True,
                "in_flight": 3,
                "handled": 120,
                "restarts": 0,
                "last_seen": "2026-11-29T10:04:55+00:00",
            },
            {
                "name": "processor-1",
                "kind": "processor",
                "state": "restarted",
                "node_id": None,
                "node_ip": None,
                "pid": None,
                "connected": None,
                "in_flight": None,
                "handled": None,
                "restarts": 1,
                "last_seen": "2026-11-29T10:03:00+00:00",
            },
            {
                "name": "aggregator-0",
                "kind": "aggregator",
                "state": "alive",
                "node_id": NODE,
                "node_ip": "127.0.0.1",
                "pid": 1470,
                "connected": True,
                "in_flight": None,
                "handled": 360,
                "restarts": 0,
                "last_seen": "2026-11-29T10:04:55+00:00",
            },
        ],
    },
}


def _event(kind: str, status: str, at: str, by: str, version: int) -> dict[str, Any]:
    return {
        "event_type": kind,
        "occurred_at": at,
        "producer": {"service": by},
        "payload": {"status": status, "version": version},
    }


class FixedApi:
    base_url = "http://fixed"

    def __init__(self, reachable: bool = True, workers_down: bool = False) -> None:
        self.reachable = reachable
        self.workers_down = workers_down
        self.submitted: list[tuple[str, dict[str, Any]]] = []
        self.requeued: list[str] = []

    def _check(self) -> None:
        if not self.reachable:
            raise ApiError("API unreachable at http://fixed (ConnectError)")

    async def stats(self) -> dict[str, Any]:
        self._check()
        return {
            "total_jobs": 2,
            "pending": 0,
            "running": 0,
            "retrying": 0,
            "completed": 1,
            "failed": 0,
            "dead_lettered": 1,
            "cancelled": 0,
            "by_type": {"hash": {"total": 1}, "sleep": {"total": 1}},
            "last_event_at": None,
            "source": "cache",
        }

    async def alerts(self) -> list[dict[str, Any]]:
        self._check()
        return [
            {
                "name": "DeadLetterQueueNotEmpty",
                "severity": "warning",
                "summary": "1 dead letters waiting",
                "since": "2026-11-29T10:00:00+00:00",
                "source": "read-model",
                "runbook": None,
            }
        ]

    async def jobs(self, status: str | None, job_type: str | None, limit: int = 50) -> list[dict[str, Any]]:
        self._check()
        return [j for j in (JOB, DEAD) if status in (None, j["status"]) and job_type in (None, j["type"])]

    async def job(self, job_id: str) -> dict[str, Any]:
        self._check()
        return JOB if job_id == JOB["id"] else DEAD

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        return [
            _event("job.created", "PENDING", "2026-11-29T10:00:00+00:00", "gateway", 0),
            _event("job.started", "RUNNING", "2026-11-29T10:00:00.040000+00:00", "processor", 1),
            _event("job.completed", "COMPLETED", "2026-11-29T10:00:00.050000+00:00", "processor", 2),
        ]

    async def job_types(self) -> list[dict[str, Any]]:
        schema = {"type": "object", "properties": {"limit": {"type": "integer", "minimum": 0}}, "required": ["limit"]}
        return [{"type": "primes", "description": "Count the primes below `limit`.", "payload_schema": schema}]

    async def submit(self, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.submitted.append((job_type, payload))
        return {"job_id": JOB["id"], "event_id": JOB["id"], "status": "PENDING", "correlation_id": "c"}

    async def dead_letters(self) -> list[dict[str, Any]]:
        return [
            {
                "id": "1",
                "job_id": DEAD["id"],
                "job_type": "sleep",
                "reason": DEAD["error"],
                "message": "{}",
                "created_at": "2026-11-29T10:00:00+00:00",
            }
        ]

    async def requeue(self, job_id: str) -> dict[str, Any]:
        self.requeued.append(job_id)
        return {**DEAD, "status": "PENDING"}

    async def workers(self) -> dict[str, Any]:
        self._check()
        if self.workers_down:
            raise ApiError("workers app unavailable: no answer within 2 s (starting, or down)")
        return WORKERS
