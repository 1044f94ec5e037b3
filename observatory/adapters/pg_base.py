"""What the PostgreSQL adapters share: a lazily opened pool, one schema per namespace, errors translated."""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
import sqlalchemy.exc
from psycopg import sql
from psycopg.rows import dict_row

from observatory.errors import StoreUnavailable


def _check(conn: psycopg.Connection[Any]) -> None:
    """The pool's check before it lends a connection, without a round trip when nothing is wrong: a server
    that restarts or ends a session writes its FATAL message and closes the socket, so a pooled connection
    with anything to read is asked for real (and dropped when it fails) before a caller gets it."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()  # not select.select: a Ray worker may hold file descriptors past 1024
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
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
            check=_check,
            # Autocommit: a lone statement is one round trip (no BEGIN, no COMMIT); the statements that must
            # stand or fall together run inside `conn.transaction()`.
            kwargs={"row_factory": dict_row, "connect_timeout": 5, "autocommit": True},
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
