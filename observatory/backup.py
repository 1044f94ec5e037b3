"""`observatory backup` and `restore`: a copy of the embedded data dir, and putting one back.

A job's row, its bus messages, its events and its counter state live in different SQLite files, so a copy
of each file on its own is not enough: the backup takes the write lock on every file first (always in the
order of FILES, so two backups cannot deadlock), copies each file with SQLite's online backup API through
other connections (WAL readers are never blocked), and only then lets the writers go on. The copy is one
instant of all the files; writers wait meanwhile, for at most their busy timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

import observatory
from observatory.adapters.sqlite_base import BUSY_TIMEOUT_MS
from observatory.backends import EMBEDDED_FILES, embedded_files
from observatory.errors import ObservatoryError
from observatory.settings import Settings

MANIFEST = "manifest.json"
FORMAT = 1


FILES = EMBEDDED_FILES  # the lock order: every backup takes the write locks in this order
KNOWN = {f.file for f in FILES}


class BackupError(ObservatoryError):
    """A backup or restore refused or failed; `code` is the exit code the CLI uses."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class BackupFile(BaseModel):
    name: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: dict[str, int] = Field(description="Rows per table, counted in the copy.")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in KNOWN:  # also keeps a crafted manifest from naming a path outside the backup
            raise ValueError(f"not one of {', '.join(sorted(KNOWN))}")
        return name


class Manifest(BaseModel):
    format: Literal[1] = FORMAT
    created_at: datetime
    namespace: str
    observatory_version: str | None
    files: list[BackupFile]

    @field_validator("files")
    @classmethod
    def _once_each(cls, files: list[BackupFile]) -> list[BackupFile]:
        if len({f.name for f in files}) != len(files):
            raise ValueError("a file is listed twice")
        return files


@dataclass(frozen=True)
class Done:
    manifest: Manifest
    notes: list[str]  # the backends that use a real server, which this backup does not hold
    paused_s: float  # how long the copy held (and took) the write locks: the longest any writer waited


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, isolation_level=None)


def rows(path: Path) -> dict[str, int]:
    """Rows per table of a database (SQLite's own tables left out)."""
    conn = _ro(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        quoted = {n: '"' + n.replace('"', '""') + '"' for n in names if not n.startswith("sqlite_")}
        return {n: conn.execute(f"SELECT count(*) FROM {q}").fetchone()[0] for n, q in quoted.items()}
    finally:
        conn.close()


def copy_database(src: Path, dst: Path) -> None:
    """Copy a database with the backup API: it reads one snapshot of the source, WAL included. The copy is
    one self-contained file (rollback journal); the adapters turn WAL on again when they open it."""
    source, target = _ro(src), sqlite3.connect(dst, isolation_level=None)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")
    finally:
        source.close()
        target.close()


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def plan(settings: Settings) -> tuple[list[Path], list[str]]:
    """The embedded files that exist, in lock order, and a note for each backend that uses a real server."""
    embedded = embedded_files(settings)
    notes = [
        f"{f.file[: -len('.sqlite3')]} uses a real server ({f.variable}): not in this backup; use {f.instead}"
        for f in FILES
        if getattr(settings, f.server)
    ]
    if not embedded:
        raise BackupError(
            "nothing embedded to back up: every backend uses a real server; back them up with pg_dump "
            "(PostgreSQL), mongodump (MongoDB) and Redis persistence (RDB/AOF)"
        )
    found = [settings.embedded_dir / f.file for f in embedded if (settings.embedded_dir / f.file).is_file()]
    if not found:
        raise BackupError(f"nothing to back up: no embedded data under {settings.embedded_dir}")
    return found, notes


@contextlib.contextmanager
def _write_locked(paths: Sequence[Path]) -> Iterator[None]:
    """Hold the write lock of every file (one connection each, taken in the given order)."""
    locks: list[sqlite3.Connection] = []
    try:
        for path in paths:
            conn = sqlite3.connect(
                path.as_uri() + "?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            locks.append(conn)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise BackupError(f"could not lock {path} within {BUSY_TIMEOUT_MS // 1000} s: {e}") from e
        yield
    finally:
        for conn in locks:
            conn.close()  # rolls back the (empty) transaction: the writers go on


def _empty_target(path: Path) -> bool:
    """Refuse a PATH that holds anything; True when this call made the directory."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} exists and is not an empty directory: choose a new path", code=2)
    made = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BackupError(f"cannot make {path}: {e}") from e
    return made


def backup(settings: Settings, path: Path) -> Done:
    """Copy every embedded file that exists into the new directory `path`, with a manifest written last."""
    sources, notes = plan(settings)
    made = _empty_target(path)
    try:
        began = time.monotonic()
        with _write_locked(sources):
            for src in sources:
                copy_database(src, path / src.name)
        paused = time.monotonic() - began  # the rest reads the copies only
        manifest = Manifest(
            created_at=datetime.now(UTC),
            namespace=settings.namespace,
            observatory_version=getattr(observatory, "__version__", None),
            files=[
                BackupFile(name=p.name, bytes=p.stat().st_size, sha256=_sha256(p), rows=rows(p))
                for p in (path / src.name for src in sources)
            ],
        )
        (path / f".{MANIFEST}.tmp").write_text(manifest.model_dump_json(indent=2))
        (path / f".{MANIFEST}.tmp").replace(path / MANIFEST)
    except BaseException as e:
        _discard(path, made)
        if isinstance(e, sqlite3.Error | OSError):
            raise BackupError(f"backup failed: {e}") from e
        raise
    return Done(manifest, notes, paused)


def _discard(path: Path, made: bool) -> None:
    if made:
        shutil.rmtree(path, ignore_errors=True)
    else:
        for child in path.iterdir():
            child.unlink(missing_ok=True)


def load(path: Path) -> Manifest:
    """The backup's manifest, once every file it lists is there with its size and checksum."""
    try:
        manifest = Manifest.model_validate_json((path / MANIFEST).read_bytes())
    except FileNotFoundError as e:
        raise BackupError(f"{path} is not a backup: no {MANIFEST}") from e
    except OSError as e:
        raise BackupError(f"cannot read {path / MANIFEST}: {e}") from e
    except ValidationError as e:
        why = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}" for err in e.errors())
        raise BackupError(f"{path / MANIFEST} is not a valid backup manifest ({why})") from e
    for f in manifest.files:
        copy = path / f.name
        if not copy.is_file():
            raise BackupError(f"{copy} is missing: the backup is incomplete")
        if copy.stat().st_size != f.bytes or _sha256(copy) != f.sha256:
            raise BackupError(f"{copy} does not match its checksum in {MANIFEST}: the backup is corrupt")
    return manifest


def _in_use(directory: Path) -> list[str]:
    """Files some connection holds open: in WAL mode every open connection keeps a shared lock, so an
    exclusive lock fails at once."""
    busy = []
    for path in sorted(directory.glob("*.sqlite3")):
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.Error as e:
            if e.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # any other error: not a file in use
                busy.append(path.name)
        finally:
            conn.close()
    return busy


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise BackupError(f"{target} is not a directory")
    if not target.exists() or not any(target.iterdir()):
        return
    if not force:
        raise BackupError(f"{target} is not empty: pass --force to replace what it holds")
    if busy := _in_use(target):
        raise BackupError(f"{', '.join(busy)} in {target} are open elsewhere: stop the observatory first")


def restore(settings: Settings, path: Path, force: bool = False) -> tuple[Manifest, list[str]]:
    """Replace the embedded data dir with the backup's files: all of them or, on any error, none."""
    manifest = load(path)
    if manifest.namespace != settings.namespace:
        raise BackupError(
            f"the backup is of namespace {manifest.namespace!r}, not {settings.namespace!r}: "
            f"set OBSERVATORY_NAMESPACE={manifest.namespace} (the bus's queue names carry it)"
        )
    target = settings.embedded_dir
    _check_target(target, force)
    staging = target.with_name(f".{target.name}.restore-{uuid.uuid4().hex[:8]}")  # same file system: renames
    try:
        staging.mkdir(parents=True)
        if target.exists():
            shutil.copymode(target, staging)
        for f in manifest.files:
            copy_database(path / f.name, staging / f.name)
            if rows(staging / f.name) != f.rows:
                raise BackupError(f"{path / f.name}: the rows copied differ from {MANIFEST}")
        _check_target(target, force)  # again: an observatory may have started during the copy
        kept = _swap(staging, target)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, sqlite3.Error | OSError):
            raise BackupError(f"restore failed, {target} left as it was: {e}") from e
        raise
    unused = {e.file: e for e in FILES if getattr(settings, e.server)}
    notes = [
        f"{f.name} restored, but unused while {unused[f.name].variable} is set"
        for f in manifest.files
        if f.name in unused
    ]
    if kept is not None:
        notes.append(f"the data dir it replaced is kept in {kept}: delete it once the restored one serves")
    return manifest, notes


def _swap(staging: Path, target: Path) -> Path | None:
    """Put `staging` in the place of `target`: two renames on one file system. The replaced data dir is kept
    beside it (nothing is deleted: it may hold files the backup has not); its path, or None."""
    if not target.exists():
        staging.rename(target)
        return None
    old = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    try:
        staging.rename(target)
    except OSError:
        old.rename(target)
        raise
    return old
