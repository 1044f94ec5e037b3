"""Stats counters in Redis. One Lua script de-duplicates and counts a batch of events atomically."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import redis as redis_lib

from contracts import Alert, EventEnvelope, JobStatus, Stats
from observatory.counting import FINAL, FINAL_STATE_TTL_S, final_state_ttl
from observatory.errors import CacheUnavailable
from observatory.ports import Counts

SEP = "\x1f"  # between job type and status in a counter's field name

# One call per batch. KEYS: counters hash, last-event key, then each event's job state key ("version|type SEP
# status"). ARGV: per event version, status, job_type, seconds to keep a final job's state, 1 when final; last,
# the batch's newest occurred_us. Returns 1 per event counted, 0 per event already seen. A job is counted under
# the status of its highest-version event: a redelivered or late event (a version already seen) never counts
# again, and out-of-order delivery converges on the right numbers. The state of a job that can no longer change
# expires (see observatory.counting), so the cache holds what the unfinished jobs need and no more.
_APPLY = """
local counted = {}
for i = 3, #KEYS do
  local a = (i - 3) * 5
  local ver = tonumber(ARGV[a + 1])
  local new = ARGV[a + 3] .. '\\31' .. ARGV[a + 2]
  local prev = redis.call('GET', KEYS[i])
  local fresh = 1
  if prev then
    local sep = string.find(prev, '|', 1, true)
    if ver <= tonumber(string.sub(prev, 1, sep - 1)) then
      fresh = 0
    else
      redis.call('HINCRBY', KEYS[1], string.sub(prev, sep + 1), -1)
    end
  end
  if fresh == 1 then
    redis.call('HINCRBY', KEYS[1], new, 1)
    if ARGV[a + 5] == '1' then
      redis.call('SET', KEYS[i], ver .. '|' .. new, 'EX', ARGV[a + 4])
    else
      redis.call('SET', KEYS[i], ver .. '|' .. new)
    end
  end
  counted[#counted + 1] = fresh
end
local ts = tonumber(ARGV[#ARGV])
if ts > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], ARGV[#ARGV]) end
return counted
"""
MAX_EVENTS_PER_CALL = 1000  # a script holds Redis while it runs: bound each call

# KEYS: the bucket's hash. ARGV: rate per second, burst, then each cost in turn. Returns the seconds each one
# waits, "0" when taken (a refused one takes nothing). Redis's own clock, so every gateway replica sees the same time.
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local waits = {}
for i = 3, #ARGV do
  local cost = tonumber(ARGV[i])
  local need = math.min(cost, burst)
  if tokens >= need then
    tokens = tokens - cost
    waits[#waits + 1] = '0'
  else
    waits[#waits + 1] = tostring((need - tokens) / rate)
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(math.max(0, burst - tokens) / rate) + 60)  -- full again by then
return waits
"""

# Lua: delete every job-state key matching PATTERN (replaced by the argument that holds it), then return 1.
_WIPE_STATES = """
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', PATTERN, 'COUNT', 1000)
  cursor = page[1]
  if #page[2] > 0 then redis.call('DEL', unpack(page[2])) end
until cursor == '0'
return 1
"""

# KEYS: generation, complete, lease, counts, last-event, the 0.1.0 keys. ARGV: a new token, the lease in ms,
# the job-state key pattern, then (counter field, n) pairs of the baseline. Refused while another lease lives;
# else the counters start again from the baseline (the jobs retention removed), in the same atomic step (so a
# rebuild whose lease ran out can never wipe a newer one's work).
_BEGIN = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1]) end
""" + _WIPE_STATES.replace("PATTERN", "ARGV[3]")

# KEYS: lease. ARGV: the token, the lease in ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: lease. ARGV: the token. Frees the lease if it is still this rebuild's.
_ABANDON = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: generation, complete, lease. ARGV: the rebuild's token. Complete only if no other rebuild (or wipe)
# came since.
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
"""

# KEYS: counts, last-event, complete, the 0.1.0 keys. ARGV: the job-state key pattern. Atomic, so no event
# is applied half before and half after it; the job states are few (see observatory.counting).
_RESET = """
redis.call('DEL', unpack(KEYS))
""" + _WIPE_STATES.replace("PATTERN", "ARGV[1]")


class RedisCounters:
    def __init__(self, url: str, namespace: str, final_ttl_s: int = FINAL_STATE_TTL_S) -> None:
        self._r = redis_lib.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True)
        self._ttl = final_ttl_s
        self._job = f"{namespace}:job:"
        self._counts, self._last = f"{namespace}:counts", f"{namespace}:last_event_us"
        self._old = [f"{namespace}:seen", f"{namespace}:jobs"]  # the unbounded keys of 0.1.0, dropped on reset
        self._apply = self._r.register_script(_APPLY)
        self._alerts = f"{namespace}:alerts"
        self._buckets = f"{namespace}:bucket:"
        self._take = self._r.register_script(_TAKE)
        self._generation, self._complete = f"{namespace}:generation", f"{namespace}:complete"
        self._lease = f"{namespace}:rebuilding"
        self._begin = self._r.register_script(_BEGIN)
        self._renew = self._r.register_script(_RENEW)
        self._finish = self._r.register_script(_FINISH)
        self._abandon = self._r.register_script(_ABANDON)
        self._reset = self._r.register_script(_RESET)

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except redis_lib.RedisError as e:
            raise CacheUnavailable(f"Redis: {e}; check REDIS_URL and that the server is up") from e

    def setup(self) -> None:
        """Nothing to create: keys appear on first use."""

    def apply(self, event: EventEnvelope) -> bool:
        return self.apply_many([event])[0]

    def apply_many(self, events: Sequence[EventEnvelope]) -> list[bool]:
        """One script call per batch (up to MAX_EVENTS_PER_CALL events), atomic and idempotent. A server
        without the script (restarted, flushed) answers NOSCRIPT, and redis-py loads it and calls again."""
        out: list[bool] = []
        for i in range(0, len(events), MAX_EVENTS_PER_CALL):
            out += self._apply_chunk(events[i : i + MAX_EVENTS_PER_CALL])
        return out

    def _apply_chunk(self, events: Sequence[EventEnvelope]) -> list[bool]:
        now = time.time()
        keys: list[str] = [self._counts, self._last]
        args: list[str | int] = []
        newest = 0
        for e in events:
            occurred = e.occurred_at.timestamp()
            keys.append(f"{self._job}{e.payload.job_id}")
            args += [
                e.payload.version,
                e.payload.status.value,
                e.payload.job_type,
                final_state_ttl(self._ttl, occurred, now),
                int(e.payload.status in FINAL),
            ]
            newest = max(newest, int(occurred * 1_000_000))
        args.append(newest)
        with self._translate():
            return [bool(r) for r in self._apply(keys=keys, args=args)]

    def complete(self) -> bool:
        with self._translate():
            return bool(self._r.exists(self._complete))

    def begin_rebuild(self, lease_s: float, baseline: Counts | None = None) -> str | None:
        token = uuid.uuid4().hex
        keys = [self._generation, self._complete, self._lease, self._counts, self._last, *self._old]
        args: list[str | int] = [token, int(lease_s * 1000), f"{self._job}*"]
        for (job_type, status), n in (baseline or {}).items():
            args += [f"{job_type}{SEP}{status.value}", n]
        with self._translate():
            return token if self._begin(keys=keys, args=args) else None

    def renew_rebuild(self, token: str, lease_s: float) -> None:
        with self._translate():
            self._renew(keys=[self._lease], args=[token, int(lease_s * 1000)])

    def finish_rebuild(self, token: str) -> bool:
        with self._translate():
            return bool(self._finish(keys=[self._generation, self._complete, self._lease], args=[token]))

    def abandon_rebuild(self, token: str) -> None:
        with self._translate():
            self._abandon(keys=[self._lease], args=[token])

    def rebuilding(self) -> bool:
        with self._translate():
            return bool(self._r.exists(self._lease))

    def reset(self) -> None:
        with self._translate():
            self._reset(keys=[self._counts, self._last, self._complete, *self._old], args=[f"{self._job}*"])

    def stats(self) -> Stats | None:
        with self._translate():
            pipe = self._r.pipeline()  # MULTI: the mark and the counts of one moment
            pipe.exists(self._complete)
            pipe.hgetall(self._counts)
            pipe.get(self._last)
            complete, raw, last_us = pipe.execute()
        if not complete or not raw:
            return None
        counts: dict[tuple[str, JobStatus], int] = {}
        for field, n in raw.items():
            job_type, status = field.split(SEP, 1)
            counts[(job_type, JobStatus(status))] = int(n)
        last = datetime.fromtimestamp(int(last_us) / 1_000_000, UTC) if last_us else None
        return Stats.from_counts(counts, last, "cache")

    def set_alerts(self, firing: dict[str, Alert], resolved: list[str]) -> None:
        with self._translate():
            pipe = self._r.pipeline()
            if firing:
                pipe.hset(self._alerts, mapping={k: a.model_dump_json() for k, a in firing.items()})
            if resolved:
                pipe.hdel(self._alerts, *resolved)
            pipe.execute()

    def alerts(self) -> list[Alert]:
        with self._translate():
            raw = self._r.hgetall(self._alerts)
        return [Alert.model_validate_json(v) for v in raw.values()]

    def take(self, bucket: str, rate_per_s: float, burst: float, cost: float) -> float:
        return self.take_many(bucket, rate_per_s, burst, [cost])[0]

    def take_many(self, bucket: str, rate_per_s: float, burst: float, costs: Sequence[float]) -> list[float]:
        with self._translate():
            return [float(w) for w in self._take(keys=[self._buckets + bucket], args=[rate_per_s, burst, *costs])]

    def ping(self) -> None:
        with self._translate():
            self._r.ping()

    def close(self) -> None:
        self._r.close()
