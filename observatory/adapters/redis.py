"""Stats counters in Redis. One Lua script de-duplicates and counts an event atomically."""

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

# KEYS: the job's state key ("version|type SEP status"), counters hash, last-event key
# ARGV: version, status, job_type, occurred_us, seconds to keep a final job's state, 1 when final
# A job is counted under the status of its highest-version event: a redelivered or late event (a version
# already seen) never counts again, and out-of-order delivery converges on the right numbers. The state of
# a job that can no longer change expires (see observatory.counting), so the cache holds what the
# unfinished jobs need and no more.
_APPLY = """
local ver = tonumber(ARGV[1])
local new = ARGV[3] .. '\\31' .. ARGV[2]
local prev = redis.call('GET', KEYS[1])
local counted = 1
if prev then
  local sep = string.find(prev, '|', 1, true)
  if ver <= tonumber(string.sub(prev, 1, sep - 1)) then
    counted = 0
  else
    redis.call('HINCRBY', KEYS[2], string.sub(prev, sep + 1), -1)
  end
end
if counted == 1 then
  redis.call('HINCRBY', KEYS[2], new, 1)
  if ARGV[6] == '1' then
    redis.call('SET', KEYS[1], ver .. '|' .. new, 'EX', ARGV[5])
  else
    redis.call('SET', KEYS[1], ver .. '|' .. new)
  end
end
local ts = tonumber(ARGV[4])
if ts > tonumber(redis.call('GET', KEYS[3]) or '0') then redis.call('SET', KEYS[3], ARGV[4]) end
return counted
"""

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
        """One pipeline (one round trip) of script calls by digest; each call is atomic on its own, and
        idempotent. Not through redis-py's pipelined scripts: they ask SCRIPT EXISTS first, a second round
        trip per batch. A server without the script (restarted, flushed) answers NOSCRIPT: it is loaded and the
        pipeline sent again."""
        now = time.time()
        calls = [
            (
                f"{self._job}{e.payload.job_id}",
                self._counts,
                self._last,
                e.payload.version,
                e.payload.status.value,
                e.payload.job_type,
                int(e.occurred_at.timestamp() * 1_000_000),
                final_state_ttl(self._ttl, e.occurred_at.timestamp(), now),
                int(e.payload.status in FINAL),
            )
            for e in events
        ]
        with self._translate():
            try:
                return self._apply_calls(calls)
            except redis_lib.exceptions.NoScriptError:
                self._apply.sha = self._r.script_load(self._apply.script)
                return self._apply_calls(calls)

    def _apply_calls(self, calls: Sequence[tuple[str | int, ...]]) -> list[bool]:
        pipe = self._r.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(self._apply.sha, 3, *call)
        return [bool(r) for r in pipe.execute()]

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
