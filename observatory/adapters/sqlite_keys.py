"""Embedded API keys: a SQLite file next to the embedded job store."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from contracts import ApiKeyInfo
from observatory.adapters.sqlite_base import SQLiteFile, from_us, now_us, to_us
from observatory.errors import StoreUnavailable

_INFO = "id, name, scopes, created_us, expires_us, last_used_us, revoked_us"


def _info(row: sqlite3.Row) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row["id"],
        name=row["name"],
        scopes=json.loads(row["scopes"]),
        created_at=from_us(row["created_us"]),
        expires_at=from_us(row["expires_us"]),
        last_used_at=from_us(row["last_used_us"]),
        revoked_at=from_us(row["revoked_us"]),
    )


class SQLiteKeyStore:
    def __init__(self, path: Path) -> None:
        self._db = SQLiteFile(path, "sqlite_keys", StoreUnavailable)

    def setup(self) -> None:
        self._db.setup()

    def add(self, info: ApiKeyInfo, digest: str) -> bool:
        with self._db.write() as conn:
            cur = conn.execute(
                "INSERT INTO api_keys (id, name, scopes, digest, created_us, expires_us) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (
                    info.id,
                    info.name,
                    json.dumps(info.scopes),
                    digest,
                    to_us(info.created_at),
                    None if info.expires_at is None else to_us(info.expires_at),
                ),
            )
            return cur.rowcount == 1

    def get(self, key_id: str) -> tuple[ApiKeyInfo, str] | None:
        with self._db.read() as conn:
            row = conn.execute(f"SELECT {_INFO}, digest FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else (_info(row), row["digest"])

    def list(self) -> list[ApiKeyInfo]:
        with self._db.read() as conn:
            return [_info(r) for r in conn.execute(f"SELECT {_INFO} FROM api_keys ORDER BY created_us, id")]

    def table(self) -> dict[str, tuple[ApiKeyInfo, str]]:
        with self._db.read() as conn:
            rows = conn.execute(f"SELECT {_INFO}, digest FROM api_keys").fetchall()
        return {r["id"]: (_info(r), r["digest"]) for r in rows}

    def revoke(self, key_id: str) -> ApiKeyInfo | None:
        with self._db.write() as conn:
            conn.execute("UPDATE api_keys SET revoked_us = coalesce(revoked_us, ?) WHERE id = ?", (now_us(), key_id))
            row = conn.execute(f"SELECT {_INFO} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else _info(row)

    def touch(self, used: dict[str, datetime]) -> None:
        if not used:
            return
        with self._db.write() as conn:
            conn.executemany(
                "UPDATE api_keys SET last_used_us = max(coalesce(last_used_us, 0), ?) WHERE id = ?",
                [(to_us(at), kid) for kid, at in used.items()],
            )

    def any_active(self) -> bool:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_us IS NULL "
                "AND (expires_us IS NULL OR expires_us > ?))",
                (now_us(),),
            ).fetchone()
        return bool(row[0])

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()
