"""Every metric the observatory exports, in one class with fixed label sets.

Serve replicas and actors run in Ray worker processes, so the metrics are `ray.util.metrics` objects:
Ray's metrics agent exports them on each node's metrics port (Prometheus finds the ports in the
service-discovery file Ray writes, see observability/prometheus.yml). Ray prefixes every name with
`ray_`. Nothing is created at import time: a process creates its `Metrics` when it starts.

Recording a Ray metric point is a call into Ray's core worker that costs a request or a job more than the
rest of its bookkeeping, so points are kept in memory (counter increments summed, gauge values replaced,
histogram observations listed) and recorded by one thread every FLUSH_S; Ray's agent exports every few
seconds anyway, so nothing shows later than it would have.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import lru_cache

from ray.util.metrics import Counter, Gauge, Histogram

from contracts import JobStatus

OTHER = "other"  # the label value for anything outside the known set, so label values stay bounded
LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600]
LAG_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60]
FLUSH_S = 1.0
MAX_OBSERVATIONS = 50_000  # per histogram and label set between two flushes; beyond that they are dropped

log = logging.getLogger(__name__)
Tags = tuple[tuple[str, str], ...]


class PointBuffer:
    """Metric points in memory until `flush` records them (the flusher thread calls it every `interval_s`)."""

    def __init__(self, interval_s: float | None = FLUSH_S) -> None:
        self._lock = threading.Lock()
        self._adds: defaultdict[tuple[Counter, Tags], float] = defaultdict(float)
        self._sets: dict[tuple[Gauge, Tags], float] = {}
        self._observed: defaultdict[tuple[Histogram, Tags], list[float]] = defaultdict(list)
        if interval_s is not None:
            threading.Thread(target=self._flush_every, args=(interval_s,), name="metrics-flush", daemon=True).start()

    def inc(self, metric: Counter, value: float, tags: dict[str, str] | None = None) -> None:
        with self._lock:
            self._adds[metric, _key(tags)] += value

    def set(self, metric: Gauge, value: float, tags: dict[str, str] | None = None) -> None:
        with self._lock:
            self._sets[metric, _key(tags)] = value

    def observe(self, metric: Histogram, value: float, tags: dict[str, str] | None = None) -> None:
        with self._lock:
            values = self._observed[metric, _key(tags)]
            if len(values) < MAX_OBSERVATIONS:
                values.append(value)

    def flush(self) -> None:
        with self._lock:
            adds, sets, observed = self._adds, self._sets, self._observed
            self._adds, self._sets, self._observed = defaultdict(float), {}, defaultdict(list)
        for (counter, tags), value in adds.items():
            _record(counter.inc, value, tags)
        for (gauge, tags), value in sets.items():
            _record(gauge.set, value, tags)
        for (histogram, tags), values in observed.items():
            for value in values:
                _record(histogram.observe, value, tags)

    def _flush_every(self, interval_s: float) -> None:
        stop = threading.Event()
        while not stop.wait(interval_s):
            self.flush()


def _record(method: Callable[..., None], value: float, tags: Tags) -> None:
    try:
        method(value, tags=dict(tags))
    except Exception:  # noqa: BLE001 - a bad point must not lose the others
        log.exception("recording a metric point failed")


def _key(tags: dict[str, str] | None) -> Tags:
    return tuple(tags.items()) if tags else ()


class Metrics:
    def __init__(self, job_types: Iterable[str], buffer: PointBuffer | None = None) -> None:
        self._types = frozenset(job_types)
        self._points = buffer or PointBuffer()
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
            "observatory_autoscaler_backlog",
            "Ready messages (jobs, inline and inline_batches queues) at the last decision.",
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
        self._points.inc(
            self.http_requests, 1, tags={"app": app, "route": route, "method": method, "status": str(status)}
        )
        self._points.observe(self.http_latency, seconds, tags={"app": app, "route": route})

    def submitted(self, job_type: str, outcome: str) -> None:
        self._points.inc(self.submissions, 1, tags={"type": self.job_type(job_type), "outcome": outcome})

    def refused(self, reason: str, jobs: int) -> None:
        self._points.inc(self.refusals, jobs, tags={"reason": reason})

    def backlog(self, unfinished: int) -> None:
        self._points.set(self.unfinished, unfinished)

    def attempt_started(self, job_type: str) -> None:
        self._points.inc(self.attempts, 1, tags={"type": self.job_type(job_type)})

    def attempt_finished(self, job_type: str, status: JobStatus, seconds: float, timed_out: bool) -> None:
        t = {"type": self.job_type(job_type)}
        self._points.inc(self.processed, 1, tags={**t, "outcome": status.value.lower()})
        self._points.observe(self.duration, seconds, tags=t)
        if status is JobStatus.RETRYING:
            self._points.inc(self.retries, 1, tags=t)
        elif status is JobStatus.DEAD_LETTERED:
            self._points.inc(self.dead_lettered, 1, tags=t)
        if timed_out:
            self._points.inc(self.timeouts, 1, tags=t)

    def retained(self, jobs: int, events: int) -> None:
        """One batch of retention (a Ray counter takes only positive increments)."""
        for kind, n in (("jobs", jobs), ("events", events)):
            if n > 0:
                self._points.inc(self.retention_removed, n, tags={"kind": kind})

    def event(self, event_type: str, duplicate: bool, lag_s: float) -> None:
        t = {"event_type": event_type}
        self._points.inc(self.events, 1, tags=t)
        self._points.observe(self.event_lag, max(lag_s, 0.0), tags=t)
        if duplicate:
            self._points.inc(self.duplicates, 1, tags=t)


@lru_cache(maxsize=1)
def metrics() -> Metrics:
    """This process's metrics (created on first use, inside a Ray worker)."""
    from observatory.jobs import default_registry

    return Metrics(default_registry().names)
