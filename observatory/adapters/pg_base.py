"""What the PostgreSQL adapters share: a lazily opened pool, one schema per namespace, errors translated."""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
import sqlalchemy.exc
from psycopg import sql
from psycopg.rows import dict_row

from observatory.errors import StoreUnavailable

CHECK_AFTER_IDLE_S = 1.0  # a connection back in the pool for longer is checked (one round trip) before use
_returned: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()


def _stamp_returned(conn: psycopg.Connection[Any]) -> None:
    _returned[conn] = time.monotonic()


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    """The pool's check before handing a connection out: a connection that idled (a server restart may
    have broken it meanwhile) pays a round trip; one returned moments ago does not, so a busy path is not
    charged one extra round trip per use. A broken one still fails at its first statement, is discarded by
    the pool, and the caller gets StoreUnavailable."""
    if conn.broken or conn.closed:
        raise psycopg.OperationalError("connection is broken")
    if time.monotonic() - _returned.get(conn, 0.0) > CHECK_AFTER_IDLE_S:
        psycopg_pool.ConnectionPool.check_connection(conn)


class PostgresSchema:
    """A connection pool on `dsn` whose queries name tables as `{ns}.table` (the namespace's schema)."""

    def __init__(self, dsn: str, namespace: str, max_size: int) -> None:
        self._ns = sql.Identifier(namespace)
        self._dsn, self._namespace = dsn, namespace
        self._pool = psycopg_pool.ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            timeout=10,
            open=False,
            check=_check_if_idle,
            reset=_stamp_returned,
            kwargs={"row_factory": dict_row, "connect_timeout": 5},
        )
        self._opened = False

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(ns=self._ns)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        try:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as e:
            raise StoreUnavailable(f"PostgreSQL: {e}; check POSTGRES_DSN and that the server is up") from e

    def _migrate(self) -> None:
        """Bring the namespace's schema to the newest migration (see observatory.schema)."""
        from observatory.schema import migrate_postgres  # Alembic only where a store is set up

        try:
            migrate_postgres(self._dsn, self._namespace)
        except (psycopg.Error, sqlalchemy.exc.DBAPIError) as e:
            raise StoreUnavailable(f"PostgreSQL: {e}; check POSTGRES_DSN, the server and the user's rights") from e

    def ping(self) -> None:
        with self._conn() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        if self._opened:
            self._pool.close()
            self._opened = False
