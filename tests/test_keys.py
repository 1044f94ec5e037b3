"""Key store conformance: every implementation of `KeyStore` must pass these."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import ApiKeyCreate, ApiKeyInfo
from observatory import keys as api_keys
from observatory.adapters.postgres_keys import PostgresKeyStore
from observatory.adapters.sqlite_keys import SQLiteKeyStore
from observatory.ports import KeyStore
from tests.helpers import scratch


@pytest.fixture(params=["postgres", "sqlite"])
def store(request, settings, tmp_path) -> KeyStore:
    if request.param == "postgres":
        import uuid

        s: KeyStore = PostgresKeyStore(settings.postgres_dsn, scratch(f"{settings.namespace}_k{uuid.uuid4().hex[:6]}"))
    else:
        s = SQLiteKeyStore(tmp_path / "keys.sqlite3")
    s.setup()
    yield s
    s.close()


def stored(name: str = "ci", scopes: list[str] | None = None, days: int | None = None) -> tuple[str, ApiKeyInfo, str]:
    created, digest = api_keys.issue(ApiKeyCreate(name=name, scopes=scopes or ["read"], expires_in_days=days))
    return created.key, ApiKeyInfo.model_validate(created.model_dump(exclude={"key"})), digest


def test_a_key_is_stored_as_a_digest_and_found_by_its_id(store):
    key, info, digest = stored(scopes=["submit", "read"], days=3)
    assert store.add(info, digest)
    found = store.get(info.id)
    assert found is not None
    got, got_digest = found
    assert got_digest == digest != key and api_keys.matches(key, got_digest)
    assert got.scopes == ["submit", "read"] and got.name == "ci"
    assert abs(got.expires_at - info.expires_at) < timedelta(milliseconds=1)
    assert store.get("0" * 12) is None


def test_an_id_is_never_taken_twice(store):
    _, info, digest = stored()
    assert store.add(info, digest)
    assert not store.add(info.model_copy(update={"name": "other"}), "0" * 64)
    assert store.get(info.id)[0].name == "ci"


def test_revoke_list_touch_and_any_active(store):
    assert not store.any_active()
    _, a, da = stored("a")
    _, b, db = stored("b")
    store.add(a, da)
    store.add(b, db)
    assert store.any_active()
    when = datetime.now(UTC)
    store.touch({a.id: when})
    revoked = store.revoke(b.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert store.revoke(b.id).revoked_at == revoked.revoked_at  # again: unchanged
    assert store.revoke("f" * 12) is None
    listed = {k.id: k for k in store.list()}
    assert set(listed) == {a.id, b.id}
    assert abs(listed[a.id].last_used_at - when) < timedelta(milliseconds=1)
    assert listed[a.id].revoked_at is None
    store.revoke(a.id)
    assert not store.any_active()


def test_an_expired_key_is_not_active(store):
    _, info, digest = stored()
    store.add(info.model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)}), digest)
    assert not store.any_active()


def test_the_table_holds_every_key_with_its_digest(store):
    _, a, da = stored("a")
    _, b, db = stored("b")
    store.add(a, da)
    store.add(b, db)
    store.revoke(b.id)
    table = store.table()
    assert set(table) == {a.id, b.id}
    assert table[a.id][1] == da and table[b.id][1] == db
    assert table[b.id][0].revoked_at is not None and table[a.id][0].name == "a"
