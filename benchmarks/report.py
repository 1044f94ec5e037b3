"""One markdown table: a column per system, a ratio column per observatory mode (observatory ÷ Celery)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.measure import SystemResult

Getter = Callable[[SystemResult], float | None]


@dataclass
class Settings:
    """What the rows were measured with, to label them."""

    jobs: int
    batch: int
    clients: int
    submit_clients: int
    phase_s: float
    rate: float
    job_label: str | None  # None when no observatory run got as far as choosing its job
    configured_processors: int
    celery_concurrency: int


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def _ms(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


@dataclass
class Row:
    label: str
    get: Getter
    fmt: Callable[[float], str]
    versus_throughput: bool = False  # a scaling row: compared with Celery's end-to-end throughput


def _rows(s: Settings, processors: list[int]) -> list[Row]:
    rows = [
        Row(
            f"end-to-end throughput, {s.jobs:,} jobs (jobs/s)",
            lambda r: r.throughput.rate if r.throughput else None,
            _rate,
        ),
        Row(f"single submit, {s.submit_clients} clients (req/s)", lambda r: r.submit.rate if r.submit else None, _rate),
        Row("single submit p50 (ms)", lambda r: r.submit.p50_ms if r.submit else None, _ms),
        Row("single submit p99 (ms)", lambda r: r.submit.p99_ms if r.submit else None, _ms),
        Row(f"submit→completed p50 at {s.rate:g}/s (ms)", lambda r: r.latency.p50_ms if r.latency else None, _ms),
        Row(f"submit→completed p99 at {s.rate:g}/s (ms)", lambda r: r.latency.p99_ms if r.latency else None, _ms),
        Row("RSS idle (MiB)", lambda r: r.memory.idle_mib if r.memory else None, _rate),
        Row("peak RSS under load (MiB)", lambda r: r.memory.peak_mib if r.memory else None, _rate),
    ]
    for p in processors:
        label = f"end-to-end throughput, {p} processor{'s' if p > 1 else ''} (jobs/s)"
        rows.append(Row(label, lambda r, p=p: r.scaling[p].rate if p in r.scaling else None, _rate, True))
    return rows


def _short(name: str) -> str:
    """`observatory (real)` → `real`: keeps the ratio columns narrow."""
    return name.removeprefix("observatory (").removesuffix(")")


def _celery_throughput(celery: SystemResult) -> float | None:
    return celery.throughput.rate if celery.throughput else None


def _cell(value: float | None, fmt: Callable[[float], str]) -> str:
    return "—" if value is None or math.isnan(value) else fmt(value)


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "—"
    ratio = ours / theirs
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:,.0f}×"


def table(results: list[SystemResult], celery: SystemResult | None, s: Settings, processors: list[int]) -> str:
    """Scaling rows compare each processor count's throughput with Celery's end-to-end throughput."""
    columns = [*results, *([celery] if celery else [])]
    header = ["metric", *(r.name for r in columns), *(f"{_short(r.name)} ÷ Celery" for r in results if celery)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in _rows(s, processors):
        cells = [row.label, *(_cell(row.get(r), row.fmt) for r in columns)]
        if celery:
            theirs = _celery_throughput(celery) if row.versus_throughput else row.get(celery)
            cells += [_ratio(row.get(r), theirs) for r in results]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def document(
    machine: dict[str, str],
    results: list[SystemResult],
    celery: SystemResult | None,
    s: Settings,
    processors: list[int],
) -> str:
    notes = [
        f"Observatory job: `{s.job_label or 'n/a'}`; Celery task: a no-op (`bench.noop`).",
        f"End-to-end throughput: {s.jobs:,} jobs submitted in batches of {s.batch} by {s.clients} concurrent "
        "clients (observatory: `POST /api/jobs/batch`; Celery: `group(...).apply_async()`), from the first "
        "submit until the server-side finish time of the last job.",
        f"Single submit: {s.submit_clients} concurrent keep-alive clients for {s.phase_s:g} s, one job per "
        "request (observatory: `POST /api/jobs` → 202; Celery: `apply_async`).",
        f"Submit→completed: single submits paced at {s.rate:g}/s for {s.phase_s:g} s; latency = the job's "
        "server-side finish time (`finished_at`; Celery: `date_done`) − its scheduled send time. The notes "
        "split the observatory's slowest 1 % by its server-side stamps (`created_at`, `started_at`).",
        "Before each single-submit round and the submit→completed phase (both systems) the kernel's dirty pages "
        "are written back (`sync`): each starts with none left from the phase before it.",
        "RSS: the sum over every process of the system (observatory: every Ray process — GCS, raylet, "
        "dashboard, agents, Serve controller/proxy/replicas, actors, workers; Celery: the worker and its pool); "
        "idle after deploy and warm-up, peak sampled every 0.5 s during the throughput run. Pages shared "
        "between processes are counted in each.",
        f"Celery: prefork pool, concurrency {s.celery_concurrency}, `acks_late=True`, otherwise defaults "
        "(prefetch multiplier 4, no publisher confirms); broker = the same RabbitMQ (own queue), results in "
        "the same Redis (database 1).",
        f"Observatory: `serve_app/config.yaml` ({s.configured_processors} processors) on a loopback Ray "
        "cluster with all cores; real = RabbitMQ, PostgreSQL, MongoDB/FerretDB, Redis; embedded = SQLite files.",
        "Ratios are observatory ÷ Celery: above 1× is better for rates, below 1× is better for latency and "
        "memory. Scaling rows (real backends) are compared with Celery's end-to-end throughput.",
    ]
    for r in [*results, *([celery] if celery else [])]:
        if r.memory:
            m = r.memory
            notes.append(
                f"{r.name}: RSS summed over {m.idle_processes} processes idle, {m.peak_processes} at the peak."
            )
        notes += [f"{r.name}: {note}" for note in r.notes]
    return "\n".join(
        [
            "## Throughput: the observatory and Celery",
            "",
            *(f"- {k}: {v}" for k, v in machine.items()),
            "",
            table(results, celery, s, processors),
            "",
            *(f"- {n}" for n in notes),
            "",
        ]
    )
