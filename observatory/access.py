"""Who may call the APIs, and how much: API-key checks, start-up safety, rate limits and the backlog bound.

Plain logic on the backend interfaces (no HTTP here): serve_app.auth turns its errors into 401/403/429/503.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts import ApiKeyInfo
from contracts.models import Scope
from observatory import keys as key_format
from observatory.errors import CacheUnavailable, Forbidden, Overloaded, RateLimited, Unauthorized
from observatory.ports import Counters, JobStore, KeyStore
from observatory.settings import Settings

log = logging.getLogger("observatory.access")

CACHE_S = 2.0  # the key table is re-read this often: a revoke bites within it
MISS_LOOKUPS_PER_S = 20  # ids missing from the table asked for directly, at most this many a second
BACKLOG_EVERY_S = 1.0  # the unfinished-jobs count is re-read this often
BACKLOG_RETRY_S = 5
NEAR_BOUND = 0.5  # from this share of the bound on, every submission re-counts


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a key, or nobody when the observatory runs open."""

    key_id: str | None
    scopes: frozenset[str]

    @property
    def bucket(self) -> str:
        return f"key:{self.key_id}" if self.key_id else "open"


OPEN = Principal(None, frozenset({"submit", "operate", "read", "admin"}))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup(mode: str, host: str, has_key: bool) -> str | None:
    """What to say once at start-up (None: nothing); raises RuntimeError when the start must be refused."""
    if mode == "disabled":
        return f"OBSERVATORY_AUTH=disabled: anyone who reaches {host} can submit, cancel and read every job"
    if has_key:
        return None
    if mode == "required":
        return "OBSERVATORY_AUTH=required and no API key exists yet: create one with `observatory keys create`"
    if not is_loopback(host):
        raise RuntimeError(
            f"Serve listens on {host}, beyond loopback, and no API key exists: create one with `observatory keys "
            "create --name admin --scopes admin,submit,operate,read` (or set OBSERVATORY_ADMIN_KEY), or set "
            "OBSERVATORY_AUTH=disabled to run open on purpose"
        )
    return (
        f"running open on {host}: no API key exists; once one does (`observatory keys create`), every request needs one"
    )


class Guard:
    """Checks `Authorization: Bearer` keys for one app replica against the whole key table, read again at
    most every CACHE_S (keys are few): a request costs no store round trip, whatever id it makes up, and
    last-used times are written in one batch at most every CACHE_S."""

    def __init__(self, settings: Settings, store: KeyStore, host: str) -> None:
        self._mode = settings.auth
        self._store = store
        self._host = host
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[ApiKeyInfo, str]] = {}
        self._loaded = -math.inf
        self._window, self._misses = -math.inf, 0
        self._used: dict[str, datetime] = {}
        self._flushed = time.monotonic()
        if settings.admin_key is not None:
            info, stored = key_format.bootstrap(settings.admin_key.get_secret_value())
            store.add(info, stored)

    def _table(self) -> dict[str, tuple[ApiKeyInfo, str]]:
        with self._lock:  # one reader refreshes; the others wait for it rather than ask the store too
            if time.monotonic() - self._loaded > CACHE_S:
                self._keys = self._store.table()
                self._loaded = time.monotonic()
            return self._keys

    def _lookup(self, key_id: str) -> tuple[ApiKeyInfo, str] | None:
        """A key made a moment ago works at once: an id missing from the table is asked for directly, but
        at most MISS_LOOKUPS_PER_S times a second, so made-up ids cost the store a bounded few queries."""
        found = self._table().get(key_id)
        if found is not None:
            return found
        now = time.monotonic()
        with self._lock:
            if now - self._window >= 1.0:
                self._window, self._misses = now, 0
            if self._misses >= MISS_LOOKUPS_PER_S:
                return None
            self._misses += 1
        found = self._store.get(key_id)
        if found is not None:
            with self._lock:
                self._keys = {**self._keys, key_id: found}
        return found

    def start(self) -> None:
        """Refuse an exposed start without a usable key; say once how the app runs."""
        now = datetime.now(UTC)
        usable = any(info.refusal(now) is None for info, _ in self._table().values())
        message = startup(self._mode, self._host, usable)
        if message:
            log.warning(message)

    def enforced(self) -> bool:
        """Keys are needed unless disabled, or open on loopback while no key was ever made (once one was,
        revoking the last does not open the API again)."""
        if self._mode == "disabled":
            return False
        return self._mode == "required" or not is_loopback(self._host) or bool(self._table())

    def open_now(self) -> bool:
        """True when keys are surely not needed and answering so needs no store round trip: disabled, or open
        on loopback while the cached key table is fresh and empty. The caller may then skip `identify`'s
        thread hop; False says nothing (ask `identify`)."""
        if self._mode == "disabled":
            return True
        if self._mode == "required" or not is_loopback(self._host):
            return False
        # No lock: this runs on the event loop, and `_table` holds the lock across a store round trip.
        loaded, keys = self._loaded, self._keys  # each read is atomic; `_table` assigns keys before loaded
        return time.monotonic() - loaded <= CACHE_S and not keys

    def identify(self, token: str | None) -> Principal:
        """Who `token` is: OPEN while keys are not needed, else the key's principal; Unauthorized when the
        key is missing, unknown, revoked or expired. Messages never repeat the token."""
        if not self.enforced():
            return OPEN
        if not token:
            raise Unauthorized("this endpoint needs an API key: send Authorization: Bearer <key>")
        kid = key_format.key_id(token)
        found = self._lookup(kid) if kid else None
        if kid is None or found is None or not key_format.matches(token, found[1]):
            raise Unauthorized("unknown API key")
        info = found[0]
        now = datetime.now(UTC)
        refusal = info.refusal(now)
        if refusal:
            raise Unauthorized(f"API key {kid} is {refusal}")
        self._note_use(kid, now)
        return Principal(kid, frozenset(info.scopes))

    @staticmethod
    def allow(principal: Principal, scopes: tuple[Scope, ...]) -> Principal:
        """The principal, when it holds one of `scopes`; Forbidden otherwise."""
        if not principal.scopes.intersection(scopes):
            raise Forbidden(f"API key {principal.key_id} lacks the scope {' or '.join(scopes)}")
        return principal

    def check(self, token: str | None, scopes: tuple[Scope, ...]) -> Principal:
        """identify, then allow: the principal for `token`, holding one of `scopes`."""
        return self.allow(self.identify(token), scopes)

    def _note_use(self, key_id: str, now: datetime) -> None:
        with self._lock:
            self._used[key_id] = now
            if time.monotonic() - self._flushed < CACHE_S:
                return
            used, self._used, self._flushed = self._used, {}, time.monotonic()
        try:
            self._store.touch(used)
        except Exception as e:  # last-used is informative: never fail a request on it
            log.warning("could not record key use: %s", e)


class Admission:
    """Whether a submission of `n` jobs may go in now: the principal's token bucket (shared by every replica
    through the counters backend) and the bound on unfinished jobs (counted in the job store every second)."""

    def __init__(self, settings: Settings, counters: Counters, jobs: JobStore) -> None:
        self._rate, self._burst = settings.rate_limit_per_s, settings.rate_burst
        self._bound = settings.max_unfinished
        self._counters, self._jobs = counters, jobs
        self._lock = threading.Lock()
        self._counted_at = -math.inf
        self._unfinished = 0

    @property
    def unfinished(self) -> int:
        return self._unfinished

    def admit(self, principal: Principal, n: int) -> None:
        """Raises Overloaded (503) or RateLimited (429), each with the seconds to wait. The backlog comes
        first, so a refused submission costs no tokens. With the counters backend down, submissions are not
        rate limited (logged): the job store, not the cache, decides whether a job can be taken."""
        [refusal] = self.admit_many([(principal, n)])
        if refusal is not None:
            raise refusal

    def admit_many(self, requests: Sequence[tuple[Principal, int]]) -> list[RateLimited | None]:
        """`admit` for each (principal, jobs), as one group: None for an admitted request, else its refusal.
        The backlog is counted at most once per group (each request is checked against it as if those before it
        were admitted), then each principal's bucket is asked once for all its requests that passed, in order
        (one round trip, not one per request); a counters backend that failed is not asked again (one timeout)."""
        out: list[RateLimited | None] = [None] * len(requests)
        may_count, ahead = True, 0  # ahead: jobs of this group's requests before this one that passed the bound
        for i, (_, n) in enumerate(requests):
            if self._bound > 0:
                try:
                    if may_count and self._recount(ahead + n):
                        may_count = False
                    self._check_bound(ahead + n)
                except RateLimited as e:
                    out[i] = e
                    continue
            ahead += n
        if self._rate > 0:
            self._take_all(requests, [i for i, refusal in enumerate(out) if refusal is None], out)
        with self._lock:  # until the next count, this replica's own submissions count too
            self._unfinished += sum(n for (_, n), refusal in zip(requests, out, strict=True) if refusal is None)
        return out

    def _take_all(
        self, requests: Sequence[tuple[Principal, int]], passed: list[int], out: list[RateLimited | None]
    ) -> None:
        """Take the tokens of the requests at `passed`, one round trip per bucket; a request refused for its
        rate gets its RateLimited in `out`. With the counters backend down, submissions are not rate limited
        (logged): the job store, not the cache, decides whether a job can be taken."""
        by_bucket: dict[str, list[int]] = {}
        for i in passed:
            by_bucket.setdefault(requests[i][0].bucket, []).append(i)
        for bucket, indexes in by_bucket.items():
            try:
                waits = self._counters.take_many(bucket, self._rate, self._burst, [requests[i][1] for i in indexes])
            except CacheUnavailable as e:
                log.warning("rate limit not applied: %s", e)
                return
            for i, wait in zip(indexes, waits, strict=True):
                if wait > 0:
                    out[i] = RateLimited(f"over the rate limit of {self._rate:g} jobs/s; retry later", wait)

    def _recount(self, n: int) -> bool:
        """Count the unfinished jobs again when due; True when it did. Due once a second, and for every
        submission (group) past half the bound, where replicas must not each add their own share on top of an
        old count."""
        with self._lock:
            near = self._unfinished + n > self._bound * NEAR_BOUND
            if not near and time.monotonic() - self._counted_at <= BACKLOG_EVERY_S:
                return False
            self._unfinished = self._jobs.unfinished()
            self._counted_at = time.monotonic()
            return True

    def _check_bound(self, n: int) -> None:
        with self._lock:
            if self._unfinished + n > self._bound:
                raise Overloaded(
                    f"{self._unfinished} jobs are waiting to run (bound OBSERVATORY_MAX_UNFINISHED={self._bound}); "
                    "retry when they drain",
                    BACKLOG_RETRY_S,
                )
