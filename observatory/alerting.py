"""The core alert conditions, evaluated from the stores by the read model itself.

Prometheus evaluates the full rules (observability/rules.yml); these run without it (embedded mode, or
before Prometheus is set up), so the UIs always have alerts. Same names, simpler windows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from contracts import Alert, JobStatus, Severity
from observatory.backends import Backends

FAILURE_RATE = 0.2  # failed share of the jobs finished in the window that raises JobFailureRateHigh
MIN_FINISHED = 10  # ... once at least this many finished
WINDOW_S = 300.0
BACKLOG = 100  # jobs waiting that raise QueueBacklogGrowing

RUNBOOKS = {
    "StoreUnavailable": "Check the server behind it (scripts/services.sh status) and its URL setting.",
    "DeadLetterQueueNotEmpty": "Inspect GET /read/dlq; requeue with POST /api/dlq/{job_id}/requeue once fixed.",
    "JobFailureRateHigh": "Look at GET /read/dlq and the failing jobs' errors; fix the handler or its input.",
    "QueueBacklogGrowing": "Add processors (args.processors in serve_app/config.yaml) or check they consume.",
    "StatsCacheDiverged": "Stats come from the job store meanwhile; the cache is rebuilt from the event store by "
    "itself (or run `observatory replay --verify`).",
}


class Watch:
    def __init__(self, backends: Backends, cache_diverged: Callable[[], bool] = lambda: False) -> None:
        self._b = backends
        self._cache_diverged = cache_diverged
        self._since: dict[str, datetime] = {}

    def _conditions(self) -> dict[str, tuple[Severity, str]]:
        found: dict[str, tuple[Severity, str]] = {}
        down = self._b.down()
        if down:
            found["StoreUnavailable"] = (Severity.CRITICAL, f"backend {', '.join(down)} unavailable")
        if "jobs" not in down:
            n = self._b.jobs.dead_letter_count()
            if n:
                found["DeadLetterQueueNotEmpty"] = (Severity.WARNING, f"{n} dead letters waiting")
            done = self._b.jobs.recent_outcomes(WINDOW_S)
            failed = done.get(JobStatus.FAILED, 0) + done.get(JobStatus.DEAD_LETTERED, 0)
            finished = failed + done.get(JobStatus.COMPLETED, 0)
            if finished >= MIN_FINISHED and failed / finished > FAILURE_RATE:
                share = f"{failed / finished:.0%}"
                found["JobFailureRateHigh"] = (Severity.WARNING, f"{share} of the jobs finished in 5 minutes failed")
        if self._cache_diverged():
            found["StatsCacheDiverged"] = (
                Severity.WARNING,
                "the stats cache disagrees with the job store: stats come from the store until it is rebuilt",
            )
        if "bus" not in down:
            depth = self._b.bus.depth("jobs")
            if depth > BACKLOG:
                found["QueueBacklogGrowing"] = (Severity.WARNING, f"{depth} jobs waiting")
        return found

    def evaluate(self) -> list[Alert]:
        found = self._conditions()
        now = datetime.now(UTC)
        self._since = {name: self._since.get(name, now) for name in found}
        return [
            Alert(
                name=name,
                severity=sev,
                summary=summary,
                since=self._since[name],
                source="read-model",
                runbook=RUNBOOKS[name],
            )
            for name, (sev, summary) in found.items()
        ]
