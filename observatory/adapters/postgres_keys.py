"""API keys in PostgreSQL, next to the jobs (same schema, its own small pool)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts import ApiKeyInfo
from observatory.adapters.pg_base import PostgresSchema

_INFO = "id, name, scopes, created_at, expires_at, last_used_at, revoked_at"


def _with_digest(row: dict[str, Any]) -> tuple[ApiKeyInfo, str]:
    """A row of the key table as (its record, its digest)."""
    return ApiKeyInfo.model_validate({k: v for k, v in row.items() if k != "digest"}), row["digest"]


class PostgresKeyStore(PostgresSchema):
    def __init__(self, dsn: str, namespace: str) -> None:
        super().__init__(dsn, namespace, max_size=2)

    def setup(self) -> None:
        self._migrate()

    def add(self, info: ApiKeyInfo, digest: str) -> bool:
        q = self._q(
            "INSERT INTO {ns}.api_keys (id, name, scopes, digest, created_at, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
        )
        with self._conn() as conn:
            cur = conn.execute(q, (info.id, info.name, info.scopes, digest, info.created_at, info.expires_at))
            return cur.rowcount == 1

    def get(self, key_id: str) -> tuple[ApiKeyInfo, str] | None:
        with self._conn() as conn:
            row = conn.execute(self._q(f"SELECT {_INFO}, digest FROM {{ns}}.api_keys WHERE id = %s"), (key_id,))
            found = row.fetchone()
        return None if found is None else _with_digest(found)

    def list(self) -> list[ApiKeyInfo]:
        with self._conn() as conn:
            rows = conn.execute(self._q(f"SELECT {_INFO} FROM {{ns}}.api_keys ORDER BY created_at, id")).fetchall()
        return [ApiKeyInfo.model_validate(r) for r in rows]

    def table(self) -> dict[str, tuple[ApiKeyInfo, str]]:
        with self._conn() as conn:
            rows = conn.execute(self._q(f"SELECT {_INFO}, digest FROM {{ns}}.api_keys")).fetchall()
        return {r["id"]: _with_digest(r) for r in rows}

    def revoke(self, key_id: str) -> ApiKeyInfo | None:
        q = self._q(
            "UPDATE {ns}.api_keys SET revoked_at = coalesce(revoked_at, clock_timestamp()) WHERE id = %s "
            f"RETURNING {_INFO}"
        )
        with self._conn() as conn:
            row = conn.execute(q, (key_id,)).fetchone()
        return None if row is None else ApiKeyInfo.model_validate(row)

    def touch(self, used: dict[str, datetime]) -> None:
        if not used:
            return
        q = self._q(
            "UPDATE {ns}.api_keys AS k SET last_used_at = greatest(k.last_used_at, u.at) "
            "FROM unnest(%s::text[], %s::timestamptz[]) AS u(id, at) WHERE k.id = u.id"
        )
        with self._conn() as conn:
            conn.execute(q, (list(used), list(used.values())))

    def any_active(self) -> bool:
        q = self._q(
            "SELECT EXISTS (SELECT 1 FROM {ns}.api_keys WHERE revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > clock_timestamp())) AS any"
        )
        with self._conn() as conn:
            return bool(conn.execute(q).fetchone()["any"])
