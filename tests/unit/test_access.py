"""API-key checks, the start-up rule and admission control, on the embedded backends."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts import ApiKeyCreate, ApiKeyInfo
from observatory import access
from observatory import keys as api_keys
from observatory.access import Admission, Guard, startup
from observatory.adapters.sqlite_counters import SQLiteCounters
from observatory.adapters.sqlite_jobs import SQLiteJobStore
from observatory.adapters.sqlite_keys import SQLiteKeyStore
from observatory.errors import CacheUnavailable, Forbidden, Overloaded, RateLimited, Unauthorized
from observatory.ports import NewJob
from observatory.settings import Settings


@pytest.fixture
def keys(tmp_path) -> SQLiteKeyStore:
    s = SQLiteKeyStore(tmp_path / "keys.sqlite3")
    s.setup()
    return s


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setattr(access, "CACHE_S", 0.0)


def add(keys: SQLiteKeyStore, scopes: list[str], **update: object) -> str:
    created, digest = api_keys.issue(ApiKeyCreate(name="t", scopes=scopes))
    keys.add(ApiKeyInfo.model_validate(created.model_dump(exclude={"key"})).model_copy(update=update), digest)
    return created.key


def test_keys_have_the_documented_form_and_only_their_digest_matches():
    created, digest = api_keys.issue(ApiKeyCreate(name="x", scopes=["read"]))
    assert api_keys.key_id(created.key) == created.id and created.key not in digest
    assert api_keys.matches(created.key, digest)
    assert not api_keys.matches(created.key[:-1] + ("A" if created.key[-1] != "A" else "B"), digest)
    assert api_keys.key_id("obs_nothex000000_" + "a" * 43) is None
    with pytest.raises(ValueError, match="obs_"):
        api_keys.issue(ApiKeyCreate(name="x", scopes=["read"]), key="secret")


def test_start_up_refuses_an_exposed_bind_without_a_key():
    with pytest.raises(RuntimeError, match="0.0.0.0.*observatory keys create.*OBSERVATORY_AUTH=disabled"):
        startup("auto", "0.0.0.0", has_key=False)
    assert startup("auto", "0.0.0.0", has_key=True) is None
    assert "running open" in startup("auto", "127.0.0.1", has_key=False)
    assert "disabled" in startup("disabled", "0.0.0.0", has_key=False)
    assert "no API key" in startup("required", "::1", has_key=False)


def test_loopback_without_keys_is_open_and_the_first_key_closes_it(keys):
    guard = Guard(Settings(), keys, "127.0.0.1")
    assert guard.check(None, ("submit",)) is access.OPEN
    add(keys, ["read"])
    with pytest.raises(Unauthorized, match="needs an API key"):
        guard.check(None, ("read",))


def test_an_exposed_bind_always_needs_a_key_unless_disabled(keys):
    with pytest.raises(Unauthorized):
        Guard(Settings(), keys, "0.0.0.0").check(None, ("read",))
    assert Guard(Settings(OBSERVATORY_AUTH="disabled"), keys, "0.0.0.0").check(None, ("read",)) is access.OPEN


def test_every_refusal_and_the_right_scope(keys):
    guard = Guard(Settings(OBSERVATORY_AUTH="required"), keys, "127.0.0.1")
    reader = add(keys, ["read"])
    revoked = add(keys, ["read"])
    keys.revoke(api_keys.key_id(revoked))
    expired = add(keys, ["read"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
    wrong = reader[:-4] + "AAAA" if not reader.endswith("AAAA") else reader[:-4] + "BBBB"
    for token, message in (
        (None, "needs an API key"),
        ("nonsense", "unknown"),
        (wrong, "unknown"),
        (revoked, "revoked"),
        (expired, "expired"),
    ):
        with pytest.raises(Unauthorized, match=message) as e:
            guard.check(token, ("read",))
        assert token is None or token not in str(e.value)
    assert guard.check(reader, ("read",)).key_id == api_keys.key_id(reader)
    assert guard.check(reader, ("submit", "read")).scopes == {"read"}
    with pytest.raises(Forbidden, match="lacks the scope submit") as e:
        guard.check(reader, ("submit",))
    assert reader not in str(e.value)


def test_a_revoked_key_is_refused_once_the_cache_expires(keys, monkeypatch):
    guard = Guard(Settings(OBSERVATORY_AUTH="required"), keys, "127.0.0.1")
    key = add(keys, ["read"])
    guard.check(key, ("read",))
    keys.revoke(api_keys.key_id(key))
    with pytest.raises(Unauthorized, match="revoked"):
        guard.check(key, ("read",))


def test_use_is_recorded_in_batches(keys):
    guard = Guard(Settings(OBSERVATORY_AUTH="required"), keys, "127.0.0.1")
    key = add(keys, ["read"])
    guard.check(key, ("read",))
    [info] = keys.list()
    assert info.last_used_at is not None


def test_the_admin_key_from_the_environment_is_stored_with_every_scope(keys):
    admin = api_keys.new_key()
    guard = Guard(Settings(OBSERVATORY_AUTH="required", OBSERVATORY_ADMIN_KEY=admin), keys, "0.0.0.0")
    assert guard.check(admin, ("admin",)).scopes == {"submit", "operate", "read", "admin"}
    Guard(Settings(OBSERVATORY_ADMIN_KEY=admin), keys, "0.0.0.0")  # a second replica: stored once
    assert len(keys.list()) == 1


def test_rate_limit_per_principal(tmp_path):
    counters = SQLiteCounters(tmp_path / "c.sqlite3")
    counters.setup()
    jobs = SQLiteJobStore(tmp_path / "j.sqlite3")
    jobs.setup()
    admission = Admission(Settings(OBSERVATORY_RATE_LIMIT=1, OBSERVATORY_RATE_BURST=3), counters, jobs)
    a, b = access.Principal("a" * 12, frozenset()), access.Principal("b" * 12, frozenset())
    admission.admit(a, 2)
    admission.admit(a, 1)
    with pytest.raises(RateLimited) as e:
        admission.admit(a, 1)
    assert not isinstance(e.value, Overloaded) and 0 < e.value.retry_after_s <= 1
    admission.admit(b, 3)  # another key has its own bucket


def test_the_backlog_bound_refuses_with_503_until_jobs_drain(tmp_path, monkeypatch):
    monkeypatch.setattr(access, "BACKLOG_EVERY_S", 0.0)
    counters = SQLiteCounters(tmp_path / "c.sqlite3")
    counters.setup()
    jobs = SQLiteJobStore(tmp_path / "j.sqlite3")
    jobs.setup()
    admission = Admission(Settings(OBSERVATORY_RATE_LIMIT=0, OBSERVATORY_MAX_UNFINISHED=3), counters, jobs)
    made = [NewJob(uuid.uuid4(), "hash", {}, "c") for _ in range(3)]
    admission.admit(access.OPEN, 3)
    jobs.create(made)
    with pytest.raises(Overloaded, match="3 jobs are waiting"):
        admission.admit(access.OPEN, 1)
    jobs.start_many([(made[0].id, False)], "w")
    admission.admit(access.OPEN, 1)


def test_a_new_key_works_at_once_and_made_up_ids_cost_a_bounded_few_queries(keys, monkeypatch):
    monkeypatch.setattr(access, "CACHE_S", 60.0)
    guard = Guard(Settings(OBSERVATORY_AUTH="required"), keys, "127.0.0.1")
    guard.check(add(keys, ["read"]), ("read",))  # loads the table
    fresh = add(keys, ["read"])
    assert guard.check(fresh, ("read",)).key_id == api_keys.key_id(fresh)  # made after the table was read
    lookups = []
    real = keys.get
    monkeypatch.setattr(keys, "get", lambda kid: lookups.append(kid) or real(kid))
    for _ in range(100):
        with pytest.raises(Unauthorized):
            guard.check(api_keys.new_key(), ("read",))
    assert len(lookups) <= access.MISS_LOOKUPS_PER_S


def test_open_now_only_while_a_fresh_table_shows_no_key(keys, monkeypatch):
    monkeypatch.setattr(access, "CACHE_S", 60.0)
    guard = Guard(Settings(), keys, "127.0.0.1")
    assert not guard.open_now()  # nothing read yet: identify must look
    assert guard.identify(None) is access.OPEN
    assert guard.open_now()
    add(keys, ["read"])
    monkeypatch.setattr(access, "CACHE_S", 0.0)  # the cached table has aged: the new key must be seen
    assert not guard.open_now()
    with pytest.raises(Unauthorized):
        guard.identify(None)
    assert not guard.open_now()
    assert not Guard(Settings(), keys, "0.0.0.0").open_now()
    assert Guard(Settings(OBSERVATORY_AUTH="disabled"), keys, "0.0.0.0").open_now()


class DownCounters:
    """A counters backend that fails every take, counting the attempts (each would be a timeout)."""

    def __init__(self) -> None:
        self.takes = 0

    def take_many(self, bucket: str, rate_per_s: float, burst: float, costs: list[float]) -> list[float]:
        self.takes += 1
        raise CacheUnavailable("redis: timed out")


class CountedJobs:
    """A job store that only counts unfinished jobs, recording how often it was asked."""

    def __init__(self, unfinished: int) -> None:
        self.counts, self._n = 0, unfinished

    def unfinished(self) -> int:
        self.counts += 1
        return self._n


def test_a_group_asks_a_failed_counters_backend_once_and_admits_everyone():
    counters, jobs = DownCounters(), CountedJobs(0)
    admission = Admission(Settings(OBSERVATORY_RATE_LIMIT=1, OBSERVATORY_RATE_BURST=1), counters, jobs)  # type: ignore[arg-type]
    assert admission.admit_many([(access.OPEN, 1)] * 50) == [None] * 50  # not rate limited while it is down
    assert counters.takes == 1  # one timeout for the group, not fifty in a row


class CountedCounters(SQLiteCounters):
    """The embedded counters, counting the round trips to the token bucket."""

    calls = 0

    def take_many(self, bucket: str, rate_per_s: float, burst: float, costs: list[float]) -> list[float]:
        self.calls += 1
        return super().take_many(bucket, rate_per_s, burst, costs)


def test_a_group_takes_its_tokens_in_one_round_trip_and_refuses_only_what_is_over_the_rate(tmp_path):
    counters = CountedCounters(tmp_path / "c.sqlite3")
    counters.setup()
    admission = Admission(Settings(OBSERVATORY_RATE_LIMIT=1, OBSERVATORY_RATE_BURST=3), counters, CountedJobs(0))  # type: ignore[arg-type]
    refusals = admission.admit_many([(access.OPEN, 1)] * 5)
    assert [type(r).__name__ if r else None for r in refusals] == [None, None, None, "RateLimited", "RateLimited"]
    assert counters.calls == 1
    assert admission.unfinished == 3  # the refused ones do not count as waiting jobs


def test_a_group_near_the_bound_counts_the_backlog_once_and_refuses_only_what_passes_it(tmp_path):
    counters = SQLiteCounters(tmp_path / "c.sqlite3")
    counters.setup()
    jobs = CountedJobs(6)
    admission = Admission(Settings(OBSERVATORY_RATE_LIMIT=0, OBSERVATORY_MAX_UNFINISHED=10), counters, jobs)  # type: ignore[arg-type]
    refusals = admission.admit_many([(access.OPEN, 2), (access.OPEN, 3), (access.OPEN, 1), (access.OPEN, 1)])
    assert [type(r).__name__ if r else None for r in refusals] == [None, "Overloaded", None, None]  # 6+2+1+1
    assert jobs.counts == 1
    assert admission.unfinished == 10


def test_open_now_does_not_wait_for_a_table_refresh_in_progress(keys, monkeypatch):
    monkeypatch.setattr(access, "CACHE_S", 60.0)
    guard = Guard(Settings(), keys, "127.0.0.1")
    guard.identify(None)  # the table is read: empty, fresh
    with guard._lock:  # noqa: SLF001 - as `_table` holds it across a store round trip
        answered: list[bool] = []
        reader = threading.Thread(target=lambda: answered.append(guard.open_now()))
        reader.start()
        reader.join(5)
    assert answered == [True]  # answered while the lock was held: it runs on the event loop
