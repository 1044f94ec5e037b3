"""Versioned schemas: Alembic migrations for the PostgreSQL schema and each embedded SQLite file.

Every store's `setup()` upgrades its database to the head of its branch under a lock (PostgreSQL: an
advisory lock in the migration's transaction; SQLite: `BEGIN IMMEDIATE`), so replicas that start together
migrate once. A database from before migrations (no version table) is adopted by migration 1, which is the
schema as it was then (`IF NOT EXISTS`). A revision this code does not know means a newer release migrated
the database: refuse to run rather than guess.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from alembic import command, context, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.pool import NullPool

from observatory.errors import SchemaTooNew
from observatory.settings import Settings

SCRIPTS = Path(__file__).with_name("migrations")
Target = Literal["postgres", "sqlite_jobs", "sqlite_keys", "sqlite_events", "sqlite_counters", "sqlite_bus"]
SQLITE_FILES: dict[str, Target] = {  # the embedded data dir: file -> its migration branch
    "jobs.sqlite3": "sqlite_jobs",
    "keys.sqlite3": "sqlite_keys",
    "events.sqlite3": "sqlite_events",
    "counters.sqlite3": "sqlite_counters",
    "bus.sqlite3": "sqlite_bus",
}
BUSY_TIMEOUT_S = 30.0
_IN_PROCESS = threading.Lock()


@dataclass(frozen=True)
class SchemaState:
    """Where one database stands: its revision (None before migration 1) and the head this code knows."""

    target: Target
    where: str
    current: str | None
    head: str

    @property
    def pending(self) -> bool:
        return self.current != self.head


def _config(connection: Connection | None = None, namespace: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS).replace("%", "%%"))  # ConfigParser syntax
    cfg.attributes.update(connection=connection, namespace=namespace)
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    """The migration scripts, read once per process (every store's setup asks)."""
    return ScriptDirectory.from_config(_config())


def _head(target: Target) -> str:
    """The newest revision of `target`'s branch that this code knows."""
    head = _scripts().get_revision(f"{target}@head")
    assert head is not None
    return head.revision


def _state(cfg: Config, target: Target, where: str) -> SchemaState:
    connection: Connection = cfg.attributes["connection"]
    opts = {"version_table_schema": cfg.attributes["namespace"]}
    current = MigrationContext.configure(connection, opts=opts).get_current_heads()
    head = _head(target)
    for rev in current:
        try:
            _scripts().get_revision(rev)
        except CommandError:
            raise SchemaTooNew(
                f"{where} is at schema revision {rev}, which this version of the observatory does not know (its "
                f"newest is {head}): a newer release migrated it. Run that release, or restore a backup "
                "taken before the upgrade."
            ) from None
    if len(current) > 1:
        raise SchemaTooNew(f"{where} has several schema revisions {current}; expected one")
    return SchemaState(target, where, current[0] if current else None, head)


def _migrate(cfg: Config, target: Target, where: str, check: bool) -> SchemaState:
    with _IN_PROCESS:  # Alembic's `context` and `op` are process-wide: one migration at a time per process
        state = _state(cfg, target, where)
        if state.pending and not check:
            command.upgrade(cfg, f"{target}@head")
        return state


def migrate_postgres(dsn: str, namespace: str, check: bool = False) -> SchemaState:
    """Upgrade (or with `check`, only inspect) the namespace's PostgreSQL schema; the state before."""
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn, connect_timeout=5), poolclass=NullPool
    )
    try:
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"observatory:{namespace}",))
            if not check:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
            return _migrate(_config(conn, namespace), "postgres", f"PostgreSQL schema {namespace}", check)
    finally:
        engine.dispose()


def migrate_sqlite(path: Path, target: Target, check: bool = False) -> SchemaState:
    """Upgrade (or with `check`, only inspect) one embedded SQLite file; the state before."""
    if check and not path.exists():
        return SchemaState(target, f"SQLite file {path}", None, _head(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(  # the path as it is: no URL parsing of `?`, `#` or `%` in it
        "sqlite://",
        creator=lambda: sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False),
        poolclass=NullPool,
    )

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not the driver's, opens transactions

    @event.listens_for(engine, "begin")
    def _write_lock(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: one migrator at a time, DDL atomic

    try:
        with engine.connect() as conn, conn.begin():
            return _migrate(_config(conn), target, f"SQLite file {path}", check)
    finally:
        engine.dispose()


def execute_script(script: str) -> None:
    """Run `script` (statements each ending with `;` at the end of a line) in a migration; `{ns}` names the
    PostgreSQL schema."""
    namespace = context.config.attributes["namespace"]
    if namespace:
        script = script.replace("{ns}", f'"{namespace}"')
    bind = op.get_bind()
    for statement in re.split(r";[ \t]*$", script, flags=re.M):
        if statement.strip():
            bind.exec_driver_sql(statement)  # as written: no bind-parameter parsing of the DDL


def migrate_all(settings: Settings, check: bool = False) -> list[SchemaState]:
    """Every database the settings select: PostgreSQL (jobs and keys) or the embedded files in use."""
    from observatory.backends import embedded_files

    states = []
    if settings.postgres_dsn:
        states.append(migrate_postgres(settings.postgres_dsn, settings.namespace, check))
    for f in embedded_files(settings):
        states.append(migrate_sqlite(settings.embedded_dir / f.file, SQLITE_FILES[f.file], check))
    return states
