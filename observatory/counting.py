"""The count-once rule the counters backends share, and how long they remember a job.

A job is counted under the status of its highest-version event; an event whose version the cache has
already seen for that job (a redelivery, or one overtaken by a later event) changes nothing. That needs
each job's last version and status only while more events of it can still come:

- an unfinished job (PENDING, RUNNING, RETRYING) and a DEAD_LETTERED one (a requeue can follow, at any
  time) are remembered for as long as they stay so;
- a COMPLETED, FAILED or CANCELLED job can no longer change. The only events of it still to come are
  redeliveries of its own, which the broker makes within minutes (a consumer that died before its ack, the
  consumer timeout, 30 minutes by default in RabbitMQ). Its state is kept for `final_ttl_s`
  (OBSERVATORY_FINAL_STATE_TTL_S, default an hour) and then dropped. A redelivery later still would count
  the job again: the read model's cache keeper (observatory.healing) compares the totals with the job
  store, answers from the store while they disagree, and rebuilds.

So the cache holds a fixed number of counters plus one entry per unfinished or dead-lettered job, plus the
jobs finished within the last `final_ttl_s`.
"""

from __future__ import annotations

from contracts import JobStatus

FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
FINAL_STATE_TTL_S = 3_600

MIN_TTL_S = 300  # a replay applies old events: keep their states at least this long, so a job's events meet


def final_state_ttl(ttl_s: int, occurred_at: float, now: float) -> int:
    """Seconds left to remember a job that finished at `occurred_at`: `ttl_s` from when it finished, not
    from when the event was applied (a replay of old events must not fill the cache for a whole `ttl_s`),
    but at least min(ttl_s, MIN_TTL_S)."""
    return max(min(ttl_s, MIN_TTL_S), int(ttl_s - (now - occurred_at)))
