"""`observatory backup` and `restore` on the embedded data dir: a copy taken while writers run holds one
instant of all five files, and a restore puts all of a verified backup back, or nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

import observatory
from contracts import Job
from observatory import backends
from observatory import backup as backups
from observatory.backends import Backends
from observatory.events import job_events, producer
from observatory.ports import NewJob
from observatory.settings import Settings
from tests.helpers import CONNECTIONS, wait_for

T = TypeVar("T")
NS = "bk"
ROOT = Path(__file__).resolve().parents[1]
SOURCE = producer("backup-test")
THREAD_WRITERS = (1, 2, 3)
PROCESS_WRITER = 9
# A writer's commits for one job, in order; each is one transaction in one file.
STAGES = (
    "jobs: created",
    "bus: job.created",
    "jobs: published",
    "events: job.created",
    "counters: job.created",
    "jobs: started",
    "bus: job.started",
    "events: job.started",
    "counters: job.started",
    "jobs: completed",
    "bus: job.completed",
    "events: job.completed",
    "counters: job.completed",
)
LOW_BITS = (1 << 64) - 1


def embedded(data_dir: Path) -> Settings:
    return Settings(OBSERVATORY_NAMESPACE=NS, OBSERVATORY_DATA_DIR=data_dir, **dict.fromkeys(CONNECTIONS))


class Writer:
    """Moves jobs through the commits the observatory makes for them, one file at a time (the job row, its
    message, the published mark, its event, its count; then the same for the start and the completion).
    A job's id holds (writer, job number), so any copy shows which of a writer's commits it has."""

    def __init__(self, b: Backends, number: int) -> None:
        self.b, self.number = b, number
        self.waiting_since: float | None = None  # set while inside a store call

    def waiting_for(self) -> float:
        since = self.waiting_since
        return 0.0 if since is None else time.monotonic() - since

    def run(self, stop: threading.Event, jobs: int | None = None) -> None:
        n = 0
        while not stop.is_set() and (jobs is None or n < jobs):
            self._job(n)
            n += 1

    def _commit(self, write: Callable[[], T]) -> T:
        self.waiting_since = time.monotonic()
        try:
            return write()
        finally:
            self.waiting_since = None

    def _job(self, n: int) -> None:
        job_id = uuid.UUID(int=(self.number << 64) | n)
        job = self._commit(lambda: self.b.jobs.create([NewJob(job_id, "hash", {"n": n}, f"w{self.number}")]))[0].job
        self._publish(job)
        self._commit(lambda: self.b.jobs.mark_published([job_id]))
        self._record(job)
        for move in (lambda: self.b.jobs.start(job_id, "writer", False), lambda: self.b.jobs.complete(job_id, n)):
            moved = self._commit(move)
            assert moved is not None
            self._publish(moved)
            self._record(moved)

    def _publish(self, job: Job) -> None:
        self._commit(lambda: self.b.bus.publish_many(job_events(job, SOURCE)))

    def _record(self, job: Job) -> None:
        events = job_events(job, SOURCE)
        self._commit(lambda: self.b.events.append_many(events))
        self._commit(lambda: self.b.counters.apply_many(events))


def write_until_stdin_closes(data_dir: str) -> None:
    """The writer in another process (see `running`)."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    b = backends.build(embedded(Path(data_dir)))
    try:
        Writer(b, PROCESS_WRITER).run(stop)
    finally:
        b.close()


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def committed(directory: Path) -> dict[int, set[int]]:
    """Each writer's commits that a data dir holds, as step numbers: job number * len(STAGES) + stage."""
    steps: dict[int, set[int]] = defaultdict(set)

    def add(job_id: str, *stages: int) -> None:
        i = uuid.UUID(job_id).int
        steps[i >> 64].update((i & LOW_BITS) * len(STAGES) + s for s in stages)

    for job_id, version, published in _query(directory / "jobs.sqlite3", "SELECT id, version, published FROM jobs"):
        add(job_id, 0, *([2] if published else []), *(5, 9)[:version])
    for (body,) in _query(directory / "bus.sqlite3", "SELECT body FROM messages"):
        message = json.loads(body)
        for event in message if isinstance(message, list) else [message]:  # one event, or several (event_batch)
            add(event["payload"]["job_id"], (1, 6, 10)[event["payload"]["version"]])
    for job_id, version in _query(directory / "events.sqlite3", "SELECT job_id, version FROM events"):
        add(job_id, (3, 7, 11)[version])
    for job_id, version in _query(directory / "counters.sqlite3", "SELECT job_id, version FROM job_state"):
        add(job_id, *(4, 8, 12)[: version + 1])  # the state of a job holds every count of it so far
    return steps


def progress(directory: Path) -> dict[int, int]:
    return {writer: len(steps) for writer, steps in committed(directory).items()}


def assert_one_instant(steps: dict[int, set[int]]) -> None:
    """A copy of one instant holds, of each writer, every commit up to its last one and none after: what is
    in a file written later in the chain (an event, a count) has what came before it in the other files."""
    for writer, held in steps.items():
        missing = sorted(set(range(max(held) + 1)) - held)
        named = [f"job {s // len(STAGES)} {STAGES[s % len(STAGES)]}" for s in missing[:3]]
        last = f"job {max(held) // len(STAGES)} {STAGES[max(held) % len(STAGES)]}"
        assert not missing, f"writer {writer}: the copy holds {last} but not {', '.join(named)} ({len(missing)})"


def live_rows(settings: Settings) -> dict[str, dict[str, int]]:
    """Rows per table of each file of a data dir, read beside the writers (WAL readers never wait)."""
    out = {}
    for f in backups.FILES:
        if (path := settings.embedded_dir / f.file).exists():
            out[f.file] = backups.rows(path)
    return out


def manifest_rows(manifest: backups.Manifest) -> dict[str, dict[str, int]]:
    return {f.name: f.rows for f in manifest.files}


@dataclass
class Running:
    settings: Settings
    writers: list[Writer]

    def when_each_made(self, commits: int) -> dict[int, int]:
        every = {*THREAD_WRITERS, PROCESS_WRITER}
        return wait_for(
            lambda: (p := progress(self.settings.embedded_dir)).keys() == every and min(p.values()) >= commits and p,
            f"every writer to make {commits} commits",
            120,
        )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """Writers in three threads and in another process, on one embedded data dir, until the test ends."""
    settings = embedded(tmp_path / "live")
    b = backends.build(settings)
    b.setup()
    keys = backends.key_store(settings)
    keys.setup()
    keys.close()
    stop, errors = threading.Event(), []
    writers = [Writer(b, number) for number in THREAD_WRITERS]

    def guarded(w: Writer) -> None:
        try:
            w.run(stop)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(w,), daemon=True) for w in writers]
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from tests.test_backup import write_until_stdin_closes as w; w({str(tmp_path / 'live')!r})",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    for t in threads:
        t.start()
    try:
        yield Running(settings, writers)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        _, stderr = child.communicate(timeout=60)
        b.close()
    assert not errors, errors
    assert child.returncode == 0, stderr


def test_writers_wait_while_the_files_are_copied_then_go_on(running: Running, tmp_path: Path, monkeypatch):
    # Given writers in three threads and another process, all of them committing
    running.when_each_made(100)
    seen: list[tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]] = []
    copy = backups.copy_database

    def copy_once_writers_wait(src: Path, dst: Path) -> None:
        if not seen:  # the first copy: every write lock is held, nothing is copied yet
            before = live_rows(running.settings)
            wait_for(lambda: all(w.waiting_for() > 0.5 for w in running.writers), "every writer thread to wait", 10)
            seen.append((before, live_rows(running.settings)))
        copy(src, dst)

    monkeypatch.setattr(backups, "copy_database", copy_once_writers_wait)

    # When a backup is taken
    done = backups.backup(running.settings, tmp_path / "copy")

    # Then nothing was committed while the locks were held, the copy holds exactly that, and the writers go on
    ((before, after),) = seen
    assert after == before
    assert manifest_rows(done.manifest) == before
    at = progress(running.settings.embedded_dir)
    wait_for(
        lambda: all(n >= at[w] + 2 * len(STAGES) for w, n in progress(running.settings.embedded_dir).items()),
        "every writer to go on",
        60,
    )


def test_a_backup_taken_while_writers_run_restores_one_instant_of_every_file(running: Running, tmp_path: Path):
    for i in range(3):  # three chances for a copy to catch the writers mid-chain
        # Given writers that made some more commits
        running.when_each_made(100 * (i + 1))

        # When a backup is taken meanwhile, and restored into a fresh data dir
        backups.backup(running.settings, tmp_path / f"copy{i}")
        restored = embedded(tmp_path / f"restored{i}")
        manifest, _ = backups.restore(restored, tmp_path / f"copy{i}")

        # Then of each writer it holds every commit up to some point and none after, and what the manifest says
        steps = committed(restored.embedded_dir)
        assert steps.keys() == {*THREAD_WRITERS, PROCESS_WRITER}
        assert_one_instant(steps)
        assert live_rows(restored) == manifest_rows(manifest)


def _with_jobs(settings: Settings, jobs: int) -> None:
    b = backends.build(settings)
    try:
        b.setup()
        keys = backends.key_store(settings)
        keys.setup()
        keys.close()
        Writer(b, 1).run(threading.Event(), jobs)
    finally:
        b.close()


def test_a_restored_data_dir_serves_the_stores(tmp_path: Path):
    # Given a backup of a data dir with three jobs
    _with_jobs(source := embedded(tmp_path / "live"), 3)
    backups.backup(source, tmp_path / "copy")

    # When it is restored into a fresh data dir and the stores open it
    backups.restore(target := embedded(tmp_path / "restored"), tmp_path / "copy")
    b = backends.build(target)
    try:
        b.setup()
        # Then they hold the jobs and their events
        job_id = uuid.UUID(int=(1 << 64) | 2)
        assert b.jobs.get(job_id).status.value == "COMPLETED"
        assert [e.event_type.value for e in b.events.for_job(job_id)] == ["job.created", "job.started", "job.completed"]
        assert sum(b.jobs.counts()[0].values()) == 3
    finally:
        b.close()


# --- the command line -----------------------------------------------------------------------------------------


def cli(data_dir: Path, *args: str, **servers: str) -> Any:
    from observatory.cli import app

    env = {"OBSERVATORY_DATA_DIR": str(data_dir), "OBSERVATORY_NAMESPACE": NS, **dict.fromkeys(CONNECTIONS)}
    return CliRunner().invoke(app, list(args), env={**env, **servers})


def digests(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else {}


def assert_refused(result: Any, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, no traceback
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr


@pytest.fixture
def backup_of_two_jobs(tmp_path: Path) -> Path:
    _with_jobs(embedded(tmp_path / "source"), 2)
    backups.backup(embedded(tmp_path / "source"), tmp_path / "copy")
    return tmp_path / "copy"


def test_backup_lists_what_it_copied(tmp_path: Path):
    # Given a data dir with a job
    _with_jobs(embedded(tmp_path), 1)

    # When it is backed up from the command line
    r = cli(tmp_path, "backup", str(tmp_path / "copy"))

    # Then every file is listed with its rows, and the copy is complete
    assert r.exit_code == 0, r.output
    assert all(f.file in r.stdout for f in backups.FILES) and "jobs 1" in r.stdout and "writers paused" in r.stdout
    manifest = backups.load(tmp_path / "copy")
    assert (manifest.namespace, manifest.observatory_version) == (NS, observatory.__version__)
    assert manifest.files[1].rows["jobs"] == 1


def test_backup_refuses_a_path_that_holds_files(tmp_path: Path):
    _with_jobs(embedded(tmp_path), 1)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "keep.txt").write_text("mine")

    r = cli(tmp_path, "backup", str(tmp_path / "copy"))

    assert_refused(r, 2, "not an empty directory")
    assert digests(tmp_path / "copy") == {"keep.txt": b"mine"}


def test_backup_refuses_when_every_backend_uses_a_real_server(tmp_path: Path):
    servers = dict(zip(CONNECTIONS, ("amqp://x", "postgresql://x", "mongodb://x", "redis://x"), strict=True))

    r = cli(tmp_path, "backup", str(tmp_path / "copy"), **servers)

    assert_refused(r, 1, "nothing embedded to back up", "pg_dump", "mongodump", "Redis persistence")
    assert not (tmp_path / "copy").exists()


def test_backup_refuses_a_data_dir_without_data(tmp_path: Path):
    r = cli(tmp_path, "backup", str(tmp_path / "copy"))

    assert_refused(r, 1, "nothing to back up")


def test_backup_skips_a_backend_on_a_real_server_with_a_note(tmp_path: Path):
    # Given a data dir with every file, and MongoDB configured for the events
    _with_jobs(embedded(tmp_path), 1)

    r = cli(tmp_path, "backup", str(tmp_path / "copy"), MONGO_URL="mongodb://x")

    assert r.exit_code == 0, r.output
    assert "note: events uses a real server (MONGO_URL): not in this backup; use mongodump" in r.stdout
    assert "events.sqlite3" not in {f.name for f in backups.load(tmp_path / "copy").files}


def _flip_a_byte(copy: Path) -> None:
    data = bytearray((copy / "events.sqlite3").read_bytes())
    data[-100] ^= 0xFF
    (copy / "events.sqlite3").write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_flip_a_byte, ("events.sqlite3", "does not match its checksum")),
        (lambda copy: (copy / "counters.sqlite3").unlink(), ("counters.sqlite3", "missing")),
        (lambda copy: (copy / "manifest.json").write_text("{not json"), ("not a valid backup manifest",)),
        (lambda copy: (copy / "manifest.json").unlink(), ("is not a backup",)),
    ],
    ids=["changed", "missing", "manifest unreadable", "no manifest"],
)
def test_restore_refuses_a_damaged_backup_and_touches_nothing(backup_of_two_jobs: Path, tmp_path: Path, damage, words):
    # Given a data dir with other data, and a damaged backup
    _with_jobs(embedded(tmp_path / "live"), 1)
    before = digests(embedded(tmp_path / "live").embedded_dir)
    damage(backup_of_two_jobs)

    # When it is restored, even with --force
    r = cli(tmp_path / "live", "restore", str(backup_of_two_jobs), "--force")

    # Then it is refused, and the data dir is as it was
    assert_refused(r, 1, *words)
    assert digests(embedded(tmp_path / "live").embedded_dir) == before
    assert [p.name for p in (tmp_path / "live").iterdir()] == [NS]


def test_restore_refuses_a_data_dir_with_data_without_force(backup_of_two_jobs: Path, tmp_path: Path):
    _with_jobs(embedded(tmp_path / "live"), 1)
    before = digests(embedded(tmp_path / "live").embedded_dir)

    r = cli(tmp_path / "live", "restore", str(backup_of_two_jobs))

    assert_refused(r, 1, "is not empty", "--force")
    assert digests(embedded(tmp_path / "live").embedded_dir) == before


def test_restore_with_force_replaces_the_data_dir_and_keeps_the_old_one(backup_of_two_jobs: Path, tmp_path: Path):
    # Given a data dir with other data (one job, and a stray file)
    _with_jobs(live := embedded(tmp_path / "live"), 1)
    (live.embedded_dir / "stray.txt").write_text("old")

    # When the backup is restored over it with --force
    r = cli(tmp_path / "live", "restore", str(backup_of_two_jobs), "--force")

    # Then the data dir holds exactly the backup's files and rows, and the replaced one is kept beside it
    assert r.exit_code == 0, r.output
    assert f"into {live.embedded_dir}" in r.stdout and "jobs 2" in r.stdout
    manifest = backups.load(backup_of_two_jobs)
    assert sorted(p.name for p in live.embedded_dir.iterdir()) == sorted(f.name for f in manifest.files)
    assert live_rows(live) == manifest_rows(manifest)
    (kept,) = [p for p in (tmp_path / "live").iterdir() if p.name != NS]
    assert kept.name.startswith(f".{NS}.replaced-") and f"kept in {kept}" in r.stdout
    assert (kept / "stray.txt").read_text() == "old" and "jobs.sqlite3" in {p.name for p in kept.iterdir()}


def test_a_restore_that_fails_midway_leaves_the_data_dir_as_it_was(
    backup_of_two_jobs: Path, tmp_path: Path, monkeypatch
):
    # Given a data dir with other data, and a disk that fails on the third file
    _with_jobs(live := embedded(tmp_path / "live"), 1)
    before = digests(live.embedded_dir)
    copy, copied = backups.copy_database, []

    def copy_until_the_disk_fails(src: Path, dst: Path) -> None:
        if len(copied) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        copy(src, dst)
        copied.append(dst)

    monkeypatch.setattr(backups, "copy_database", copy_until_the_disk_fails)

    # When the backup is restored over it
    with pytest.raises(backups.BackupError, match="disk I/O error"):
        backups.restore(live, backup_of_two_jobs, force=True)

    # Then the data dir is as it was, and nothing half-restored is left beside it
    assert digests(live.embedded_dir) == before
    assert [p.name for p in (tmp_path / "live").iterdir()] == [NS]


def test_restore_refuses_while_the_observatory_holds_the_files(backup_of_two_jobs: Path, tmp_path: Path):
    # Given stores that have the data dir open
    _with_jobs(live := embedded(tmp_path / "live"), 1)
    b = backends.build(live)
    try:
        b.jobs.counts()
        before = digests(live.embedded_dir)

        r = cli(tmp_path / "live", "restore", str(backup_of_two_jobs), "--force")

        assert_refused(r, 1, "jobs.sqlite3", "stop the observatory first")
        assert digests(live.embedded_dir) == before
    finally:
        b.close()


def test_restore_refuses_a_backup_of_another_namespace(backup_of_two_jobs: Path, tmp_path: Path):
    r = cli(tmp_path / "live", "restore", str(backup_of_two_jobs), OBSERVATORY_NAMESPACE="other")

    assert_refused(r, 1, "namespace 'bk'", "OBSERVATORY_NAMESPACE=bk")
    assert not (tmp_path / "live").exists()
