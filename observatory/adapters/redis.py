"""Stats counters in Redis. One Lua script de-duplicates and counts an event atomically."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import redis as redis_lib

from contracts import Alert, EventEnvelope, JobStatus, Stats
from observatory.errors import CacheUnavailable

SEP = "\x1f"  # between job type and status in a counter's field name

# KEYS: seen-set, job->"version|type SEP status" hash, counters hash, last-event key
# ARGV: event_id, job_id, version, status, job_type, occurred_us
# A job is counted under the status of its highest-version event, so redelivered or late events never
# double count, and out-of-order delivery still converges on the right numbers.
_APPLY = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
local ver = tonumber(ARGV[3])
local new = ARGV[5] .. '\\31' .. ARGV[4]
local prev = redis.call('HGET', KEYS[2], ARGV[2])
local newer = true
if prev then
  local sep = string.find(prev, '|', 1, true)
  if ver <= tonumber(string.sub(prev, 1, sep - 1)) then
    newer = false
  else
    redis.call('HINCRBY', KEYS[3], string.sub(prev, sep + 1), -1)
  end
end
if newer then
  redis.call('HINCRBY', KEYS[3], new, 1)
  redis.call('HSET', KEYS[2], ARGV[2], ver .. '|' .. new)
end
local ts = tonumber(ARGV[6])
if ts > tonumber(redis.call('GET', KEYS[4]) or '0') then redis.call('SET', KEYS[4], ARGV[6]) end
return 1
"""

# KEYS: the bucket's hash. ARGV: rate per second, burst, cost. Returns the seconds to wait, "0" when taken.
# Redis's own clock, so every gateway replica sees the same time.
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local need = math.min(cost, burst)
local wait = 0
if tokens >= need then tokens = tokens - cost else wait = (need - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((burst + cost) / rate) + 60)
return tostring(wait)
"""

# KEYS: generation, complete. ARGV: the rebuild's token. Complete only if no other rebuild (or wipe) came since.
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""


class RedisCounters:
    def __init__(self, url: str, namespace: str) -> None:
        self._r = redis_lib.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True)
        self._keys = [f"{namespace}:{k}" for k in ("seen", "jobs", "counts", "last_event_us")]
        self._apply = self._r.register_script(_APPLY)
        self._alerts = f"{namespace}:alerts"
        self._buckets = f"{namespace}:bucket:"
        self._take = self._r.register_script(_TAKE)
        self._generation, self._complete = f"{namespace}:generation", f"{namespace}:complete"
        self._finish = self._r.register_script(_FINISH)

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
        """One pipeline (one round trip) of script calls; each call is atomic on its own."""
        with self._translate():
            pipe = self._r.pipeline(transaction=False)
            for event in events:
                p = event.payload
                args = [
                    str(event.event_id),
                    str(p.job_id),
                    p.version,
                    p.status.value,
                    p.job_type,
                    int(event.occurred_at.timestamp() * 1_000_000),
                ]
                self._apply(keys=self._keys, args=args, client=pipe)
            return [bool(r) for r in pipe.execute()]

    def complete(self) -> bool:
        with self._translate():
            return bool(self._r.exists(self._complete))

    def begin_rebuild(self) -> str:
        token = uuid.uuid4().hex
        with self._translate():
            pipe = self._r.pipeline()  # MULTI: no reader sees the new generation with the old mark
            pipe.set(self._generation, token)
            pipe.delete(self._complete)
            pipe.execute()
        return token

    def finish_rebuild(self, token: str) -> bool:
        with self._translate():
            return bool(self._finish(keys=[self._generation, self._complete], args=[token]))

    def reset(self) -> None:
        with self._translate():
            self._r.delete(*self._keys, self._complete)

    def stats(self) -> Stats | None:
        with self._translate():
            pipe = self._r.pipeline()  # MULTI: the mark and the counts of one moment
            pipe.exists(self._complete)
            pipe.hgetall(self._keys[2])
            pipe.get(self._keys[3])
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
        with self._translate():
            return float(self._take(keys=[self._buckets + bucket], args=[rate_per_s, burst, cost]))

    def ping(self) -> None:
        with self._translate():
            self._r.ping()

    def close(self) -> None:
        self._r.close()
