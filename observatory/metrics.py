"""Every metric the observatory exports, in one class with fixed label sets.

Serve replicas and actors run in Ray worker processes, so the metrics are `ray.util.metrics` objects:
Ray's metrics agent exports them on each node's metrics port (Prometheus finds the ports in the
service-discovery file Ray writes, see observability/prometheus.yml). Ray prefixes every name with
`ray_`. Nothing is created at import time: a process creates its `Metrics` when it starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from ray.util.metrics import Counter, Gauge, Histogram

from contracts import JobStatus

OTHER = "other"  # the label value for anything outside the known set, so label values stay bounded
LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600]
LAG_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60]


class Metrics:
    def __init__(self, job_types: Iterable[str]) -> None:
        self._types = frozenset(job_types)
        self.http_requests = Counter(
            "observatory_http_requests",
            "HTTP requests by app, route template, method and status.",
            tag_keys=("app", "route", "method", "status"),
        )
        self.http_latency = Histogram(
            "observatory_http_request_seconds",
            "HTTP request latency.",
            LATENCY_BUCKETS,
            tag_keys=("app", "route"),
        )
        self.submissions = Counter(
            "observatory_jobs_submitted",
            "Submitted jobs by type and outcome (accepted, duplicate, rejected).",
            tag_keys=("type", "outcome"),
        )
        self.processed = Counter(
            "observatory_jobs_processed",
            "Finished attempts by type and outcome (the status they led to).",
            tag_keys=("type", "outcome"),
        )
        self.duration = Histogram(
            "observatory_job_duration_seconds",
            "Handler run time per attempt.",
            DURATION_BUCKETS,
            tag_keys=("type",),
        )
        self.in_flight = Gauge("observatory_jobs_in_flight", "Jobs a processor is running.", tag_keys=("processor",))
        self.attempts = Counter("observatory_job_attempts", "Attempts started, by type.", tag_keys=("type",))
        self.retries = Counter("observatory_job_retries", "Retries scheduled, by type.", tag_keys=("type",))
        self.dead_lettered = Counter("observatory_jobs_dead_lettered", "Jobs dead-lettered.", tag_keys=("type",))
        self.timeouts = Counter("observatory_job_timeouts", "Attempts stopped at their timeout.", tag_keys=("type",))
        self.events = Counter("observatory_events_consumed", "Events consumed by type.", tag_keys=("event_type",))
        self.duplicates = Counter(
            "observatory_events_duplicate", "Redelivered events skipped, by type.", tag_keys=("event_type",)
        )
        self.event_lag = Histogram(
            "observatory_event_lag_seconds",
            "Consume time minus occurred_at.",
            LAG_BUCKETS,
            tag_keys=("event_type",),
        )
        self.queue_depth = Gauge("observatory_queue_depth", "Messages waiting, per queue.", tag_keys=("queue",))
        self.queue_consumers = Gauge("observatory_queue_consumers", "Consumers per queue.", tag_keys=("queue",))
        self.store_up = Gauge("observatory_store_up", "1 when the backend answers, else 0.", tag_keys=("backend",))
        self.dead_letters = Gauge("observatory_dead_letters", "Entries in the dead-letter table.")
        self.processors_desired = Gauge("observatory_processors_desired", "Processors the autoscaler wants.")
        self.processors_actual = Gauge("observatory_processors_actual", "Processors alive at the last check.")
        self.autoscaler_backlog = Gauge(
            "observatory_autoscaler_backlog", "Ready messages (jobs and inline queues) at the last decision."
        )
        self.scalings = Counter(
            "observatory_processor_scalings", "Autoscaling changes of the processor count.", tag_keys=("direction",)
        )
        self.refusals = Counter(
            "observatory_jobs_refused",
            "Jobs refused at submission by admission control: RateLimited (429) or Overloaded (503).",
            tag_keys=("reason",),
        )
        self.unfinished = Gauge(
            "observatory_unfinished_jobs", "PENDING plus RETRYING jobs, as the gateway last counted them."
        )
        self.retention_removed = Counter(
            "observatory_retention_removed",
            "Rows retention removed, by kind (jobs, events).",
            tag_keys=("kind",),
        )

    def job_type(self, name: str) -> str:
        return name if name in self._types else OTHER

    def request(self, app: str, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.inc(1, tags={"app": app, "route": route, "method": method, "status": str(status)})
        self.http_latency.observe(seconds, tags={"app": app, "route": route})

    def submitted(self, job_type: str, outcome: str) -> None:
        self.submissions.inc(1, tags={"type": self.job_type(job_type), "outcome": outcome})

    def refused(self, reason: str, jobs: int) -> None:
        self.refusals.inc(jobs, tags={"reason": reason})

    def backlog(self, unfinished: int) -> None:
        self.unfinished.set(unfinished)

    def attempt_started(self, job_type: str) -> None:
        self.attempts.inc(1, tags={"type": self.job_type(job_type)})

    def attempt_finished(self, job_type: str, status: JobStatus, seconds: float, timed_out: bool) -> None:
        t = {"type": self.job_type(job_type)}
        self.processed.inc(1, tags={**t, "outcome": status.value.lower()})
        self.duration.observe(seconds, tags=t)
        if status is JobStatus.RETRYING:
            self.retries.inc(1, tags=t)
        elif status is JobStatus.DEAD_LETTERED:
            self.dead_lettered.inc(1, tags=t)
        if timed_out:
            self.timeouts.inc(1, tags=t)

    def retained(self, jobs: int, events: int) -> None:
        """One batch of retention (a Ray counter takes only positive increments)."""
        for kind, n in (("jobs", jobs), ("events", events)):
            if n > 0:
                self.retention_removed.inc(n, tags={"kind": kind})

    def event(self, event_type: str, duplicate: bool, lag_s: float) -> None:
        t = {"event_type": event_type}
        self.events.inc(1, tags=t)
        self.event_lag.observe(max(lag_s, 0.0), tags=t)
        if duplicate:
            self.duplicates.inc(1, tags=t)


@lru_cache(maxsize=1)
def metrics() -> Metrics:
    """This process's metrics (created on first use, inside a Ray worker)."""
    from observatory.jobs import default_registry

    return Metrics(default_registry().names)
