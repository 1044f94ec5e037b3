"""What the CLI prints: plain-text views of the read model's documents (pure functions, no I/O)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from contracts import JobStatus, Stats

STATUSES = tuple(s.value.lower() for s in JobStatus)  # the stats' field names


def _when(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if iso else "-"


def _took(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    s = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def status_lines(stats: dict[str, Any], alerts: list[dict[str, Any]]) -> list[str]:
    counts = ", ".join(f"{name.replace('_', '-')} {stats[name]}" for name in STATUSES)
    out = [f"jobs {stats['total_jobs']}: {counts}  (source: {stats['source']})"]
    for name, t in sorted(stats["by_type"].items()):
        per = "  ".join(f"{s.replace('_', '-')} {t[s]}" for s in STATUSES if t.get(s))
        out.append(f"  {name:<16} total {t['total']:>6}  {per}")
    if alerts:
        out.append(f"alerts {len(alerts)}:")
        out += [
            f"  [{a['severity']}] {a['name']}: {a['summary']} (since {_when(a['since'])}, {a['source']})"
            for a in alerts
        ]
    else:
        out.append("alerts: none")
    return out


def job_lines(job: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    out = [
        f"job {job['id']}",
        f"  type         {job['type']}",
        f"  status       {job['status']}",
        f"  attempts     {job['attempts']} of {job['max_attempts']} (timeout {job['timeout_s']:g} s)",
        f"  created      {_when(job['created_at'])}",
        f"  started      {_when(job.get('started_at'))}",
        f"  finished     {_when(job.get('finished_at'))}",
        f"  correlation  {job['correlation_id']}",
    ]
    if job.get("idempotency_key"):
        out.append(f"  idempotency  {job['idempotency_key']}")
    out.append("payload:")
    out += [f"  {line}" for line in json.dumps(job["payload"], indent=2).splitlines()]
    if job.get("error"):
        out.append(f"error: {job['error']}")
    else:
        out.append("result:")
        out += [f"  {line}" for line in json.dumps(job.get("result"), indent=2).splitlines()]
    attempts = job.get("attempt_history") or []
    out.append(f"attempts ({len(attempts)}):")
    for a in attempts:
        took = _took(a["started_at"], a.get("finished_at")) or "running"
        end = f"  error: {a['error']}" if a.get("error") else ""
        out.append(f"  #{a['number']} {a['worker']}  {_when(a['started_at'])}  {took}{end}")
    out.append(f"events ({len(events)}):")
    previous = None
    for e in events:
        gap = f"+{_took(previous, e['occurred_at'])}" if previous else ""
        out.append(f"  {_when(e['occurred_at'])}  {e['event_type']:<18} {gap:<12} by {e['producer']['service']}")
        previous = e["occurred_at"]
    return out


def jobs_lines(page: dict[str, Any]) -> list[str]:
    if not page["items"]:
        return ["no jobs"]
    out = [f"{'id':<36}  {'type':<16} {'status':<14} {'attempts':>8}  created"]
    for j in page["items"]:
        attempts = f"{j['attempts']}/{j['max_attempts']}"
        out.append(f"{j['id']}  {j['type']:<16} {j['status']:<14} {attempts:>8}  {_when(j['created_at'])}")
    if page.get("next_cursor"):
        out.append(f"more: --cursor {page['next_cursor']}")
    return out


def dlq_lines(page: dict[str, Any]) -> list[str]:
    if not page["items"]:
        return ["no dead letters"]
    out = []
    for d in page["items"]:
        job = d["job_id"] or "(unreadable message)"
        out.append(f"{job:<36}  {d['job_type'] or '-':<16} {_when(d['created_at'])}  {d['reason']}")
    if page.get("next_cursor"):
        out.append(f"more: --cursor {page['next_cursor']}")
    return out


def stats_differences(
    cached: Stats | None, store: tuple[dict[tuple[str, JobStatus], int], datetime | None]
) -> list[str]:
    """Each count where the cache's stats and the job store's differ, one line each (none: an empty list)."""
    if cached is None:
        return ["the cache holds no complete stats"]
    truth = Stats.from_counts(store[0], store[1], "store")
    got, want = (
        cached.model_dump(exclude={"source", "last_event_at"}),
        truth.model_dump(exclude={"source", "last_event_at"}),
    )
    lines = [f"{k}: cache {got[k]}, store {want[k]}" for k in sorted(want) if k != "by_type" and got[k] != want[k]]
    for job_type in sorted(set(got["by_type"]) | set(want["by_type"])):
        a, b = got["by_type"].get(job_type, {}), want["by_type"].get(job_type, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k, 0) != b.get(k, 0):
                lines.append(f"{job_type}.{k}: cache {a.get(k, 0)}, store {b.get(k, 0)}")
    return lines
