"""Schema migrations on the real PostgreSQL and on SQLite files: a database and a data dir written by the code
before migrations (tests/fixtures/legacy, built by its build.py from that code) upgrade in place with every
row intact, replicas starting together migrate once, and a schema newer than the code refuses to run."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from contracts import JobStatus
from observatory import backends
from observatory.errors import SchemaTooNew
from observatory.keys import new_key
from observatory.ports import NewJob
from observatory.schema import SQLITE_FILES, SchemaState, migrate_postgres, migrate_sqlite
from observatory.settings import Settings
from tests.cluster import BIN, serve_cluster
from tests.helpers import CONNECTIONS, FAST_RETRIES, final_jobs, scratch, stats_settle, wait_for

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
LEGACY_NAMESPACE = "legacy_fixture"  # the namespace build.py wrote the data dir under
OBSERVATORY = BIN / "observatory"
PG_TABLES = ("jobs", "job_attempts", "dead_letters", "api_keys")


def pg_rows(dsn: str, ns: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {ns}.{t}").fetchall(), key=repr) for t in PG_TABLES}


def sqlite_rows(folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of every file, except the migrations' own version table."""
    rows = {}
    for name in SQLITE_FILES:
        conn = sqlite3.connect(folder / name)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for t in tables:
            if t != "alembic_version":
                rows[f"{name}:{t}"] = sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
        conn.close()
    return rows


def kept(after: dict[str, list[tuple[Any, ...]]], before: dict[str, list[tuple[Any, ...]]]) -> bool:
    """Every table of `before` still holds exactly its rows: later migrations may add tables, and columns
    (at the end, NULL in the old rows), but never change a value."""
    for table, rows in before.items():
        width = len(rows[0]) if rows else 0
        if sorted((r[:width] for r in after[table]), key=repr) != rows:
            return False
        if any(v is not None for r in after[table] for v in r[width:]):
            return False
    return True


def at_head(state: SchemaState) -> bool:
    return state.current == state.head


@pytest.fixture
def legacy_pg(settings: Settings) -> Settings:
    """The legacy PostgreSQL schema, loaded under a fresh namespace."""
    ns = scratch(f"{settings.namespace}_l{uuid.uuid4().hex[:6]}")
    assert settings.postgres_dsn
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute((LEGACY / "postgres.sql").read_text().replace("__NS__", ns))
    return Settings(OBSERVATORY_NAMESPACE=ns)


@pytest.fixture
def legacy_dir(tmp_path: Path) -> Settings:
    """The legacy embedded data dir, copied, with no server configured."""
    shutil.copytree(LEGACY / "datadir", tmp_path / LEGACY_NAMESPACE)
    return Settings(OBSERVATORY_NAMESPACE=LEGACY_NAMESPACE, OBSERVATORY_DATA_DIR=tmp_path, **dict.fromkeys(CONNECTIONS))


def test_a_postgres_schema_from_before_migrations_upgrades_with_its_data_intact(legacy_pg):
    dsn, ns = legacy_pg.postgres_dsn, legacy_pg.namespace
    assert dsn
    before = pg_rows(dsn, ns)
    assert len(before["jobs"]) == 8 and before["job_attempts"] and before["dead_letters"] and before["api_keys"]
    assert migrate_postgres(dsn, ns, check=True).current is None

    jobs, keys = backends.build(legacy_pg).jobs, backends.key_store(legacy_pg)
    try:
        jobs.setup()
        keys.setup()
        assert kept(pg_rows(dsn, ns), before)
        assert at_head(migrate_postgres(dsn, ns, check=True))
        assert [k.name for k in keys.list()] == ["legacy"]
        counts_before = jobs.counts()[0]
        (made,) = jobs.create([NewJob(uuid.uuid4(), "noop", {}, "after-upgrade")])
        assert jobs.start(made.job.id, "w", rerun=False) is not None
        assert jobs.complete(made.job.id, {"ok": True}) is not None
        counts = jobs.counts()[0]
        assert counts[("noop", JobStatus.COMPLETED)] == 1
        assert {k: v for k, v in counts.items() if k[0] != "noop"} == counts_before
    finally:
        jobs.close()
        keys.close()


def test_a_data_dir_from_before_migrations_upgrades_with_its_data_intact(legacy_dir):
    folder = legacy_dir.embedded_dir
    before = sqlite_rows(folder)
    assert len(before["jobs.sqlite3:jobs"]) == 8 and before["events.sqlite3:events"]
    assert before["counters.sqlite3:counts"] and before["keys.sqlite3:api_keys"] and before["bus.sqlite3:messages"]
    b, keys = backends.build(legacy_dir), backends.key_store(legacy_dir)
    try:
        b.setup()
        keys.setup()
        assert kept(sqlite_rows(folder), before)
        for name, target in SQLITE_FILES.items():
            assert at_head(migrate_sqlite(folder / name, target, check=True)), name
        assert sum(b.jobs.counts()[0].values()) == 8
        assert [k.name for k in keys.list()] == ["legacy"]
        assert len(b.events.for_job(uuid.UUID(int=1))) >= 2
    finally:
        b.close()
        keys.close()


def test_the_observatory_runs_on_a_migrated_data_dir(legacy_dir):
    """Started on the legacy data dir as it is: the start-up migrates it, the old jobs read back, new jobs run.
    The data dir holds an API key, so access control is on: the admin key comes from the environment."""
    admin = new_key()
    env = {
        "OBSERVATORY_NAMESPACE": LEGACY_NAMESPACE,
        "OBSERVATORY_DATA_DIR": str(legacy_dir.data_dir),
        "OBSERVATORY_ADMIN_KEY": admin,
        **FAST_RETRIES,
    }
    truth = backends.build(legacy_dir)
    headers = {"Authorization": f"Bearer {admin}"}
    try:
        with (
            serve_cluster(env, CONNECTIONS) as url,
            httpx.Client(base_url=url, timeout=60, headers=headers) as api,
        ):
            old = api.get(f"/read/jobs/{uuid.UUID(int=1)}").json()
            assert old["status"] == "COMPLETED" and old["result"] == {"ok": 1}
            r = api.post("/api/jobs/batch", json={"jobs": [{"type": "noop", "payload": {}}] * 5})
            assert r.status_code == 202, r.text
            ids = [a["job_id"] for a in r.json()["accepted"]]
            final = wait_for(lambda: final_jobs(api, ids), "the new jobs final")
            assert {j["status"] for j in final.values()} == {"COMPLETED"}
            stats_settle(api, truth, "the stats to equal the job store")
        for name, target in SQLITE_FILES.items():
            assert at_head(migrate_sqlite(legacy_dir.embedded_dir / name, target, check=True)), name
    finally:
        truth.close()


def _migrate_after(go: Any, fn: Any, args: tuple[Any, ...], results: Any) -> None:
    go.wait()
    try:
        results.put(fn(*args))
    except Exception as e:  # noqa: BLE001 - handed to the test, which asserts on it
        results.put(repr(e))


def race(fn: Any, *args: Any, n: int = 4) -> list[Any]:
    """Run `fn(*args)` in `n` processes (as replicas are) released at once; their results or errors."""
    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_migrate_after, args=(go, fn, args, results)) for _ in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    return out


def test_replicas_starting_together_migrate_once(settings, tmp_path):
    dsn, ns = settings.postgres_dsn, scratch(f"{settings.namespace}_race")
    assert dsn
    for results in (race(migrate_postgres, dsn, ns), race(migrate_sqlite, tmp_path / "j", "sqlite_jobs")):
        assert all(isinstance(r, SchemaState) for r in results), results
        assert sorted(r.current is None for r in results) == [False, False, False, True], results
    with psycopg.connect(dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {ns}.alembic_version").fetchone() == (1,)
    threads = [threading.Thread(target=migrate_sqlite, args=(tmp_path / f"f{i}", "sqlite_jobs")) for i in range(4)]
    for t in threads:  # several files in one process at once: Alembic's process-wide state is guarded
        t.start()
    for t in threads:
        t.join(60)
    for i in range(4):
        assert at_head(migrate_sqlite(tmp_path / f"f{i}", "sqlite_jobs", check=True))


def test_a_schema_newer_than_the_code_refuses_to_start(legacy_pg, legacy_dir):
    dsn, ns = legacy_pg.postgres_dsn, legacy_pg.namespace
    assert dsn
    migrate_postgres(dsn, ns)
    with psycopg.connect(dsn) as conn:
        conn.execute(f"UPDATE {ns}.alembic_version SET version_num = 'postgres_9999'")
    jobs = backends.build(legacy_pg).jobs
    with pytest.raises(SchemaTooNew, match="postgres_9999, which this version of the observatory does not know"):
        jobs.setup()
    jobs.close()
    assert pg_rows(dsn, ns)["jobs"]  # nothing dropped or changed

    for name in ("jobs", "keys"):
        path = legacy_dir.embedded_dir / f"{name}.sqlite3"
        migrate_sqlite(path, SQLITE_FILES[path.name])
        with sqlite3.connect(path) as conn:
            conn.execute(f"UPDATE alembic_version SET version_num = 'sqlite_{name}_9999'")
    with pytest.raises(SchemaTooNew, match="sqlite_jobs_9999"):
        backends.build(legacy_dir).jobs.setup()

    env = {"OBSERVATORY_NAMESPACE": LEGACY_NAMESPACE, "OBSERVATORY_DATA_DIR": str(legacy_dir.data_dir)}
    for command in (["migrate"], ["replay"], ["keys", "list"], ["purge", "--older-than", "7d"]):
        out = subprocess.run([OBSERVATORY, *command], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 1 and "_9999, which this version" in out.stderr and "Traceback" not in out.stderr, out


def test_migrate_check_reports_without_changing_anything_then_migrate_applies(tmp_path):
    env = {"OBSERVATORY_NAMESPACE": "fresh", "OBSERVATORY_DATA_DIR": str(tmp_path)}

    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([OBSERVATORY, "migrate", *args], capture_output=True, text=True, env=env, timeout=60)

    check = migrate("--check")
    assert check.returncode == 1 and "needs migrating" in check.stdout, check
    assert not (tmp_path / "fresh").exists()
    done = migrate()
    assert done.returncode == 0 and done.stdout.count("migrated") == len(SQLITE_FILES), done
    again = migrate("--check")
    assert again.returncode == 0 and again.stdout.count("up to date") == len(SQLITE_FILES), again
