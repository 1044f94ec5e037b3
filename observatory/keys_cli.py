"""`observatory keys`: create, list and revoke API keys, directly in the job store's database.

Direct, not over HTTP: the first key has to come from somewhere, and an operator with the database
credentials (POSTGRES_DSN, or the embedded data dir) is the one who may make it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from contracts import ApiKeyCreate, ApiKeyInfo
from contracts.models import SCOPES
from observatory import backends
from observatory import keys as api_keys
from observatory.errors import BackendUnavailable
from observatory.ports import KeyStore
from observatory.settings import Settings

app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _store() -> KeyStore:
    store = backends.key_store(Settings())
    try:
        store.setup()
    except BackendUnavailable as e:
        _fail(f"{e}")
    return store


def _line(k: ApiKeyInfo) -> str:
    state = k.refusal(datetime.now(UTC)) or "active"
    used = k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "never"
    expires = k.expires_at.isoformat(timespec="seconds") if k.expires_at else "never"
    return f"{k.id}  {k.name:<24} {','.join(k.scopes):<28} {state:<8} used {used}  expires {expires}"


@app.command()
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key")],
    scopes: Annotated[str, typer.Option(help=f"Comma-separated, from {', '.join(SCOPES)}")],
    expires_in_days: Annotated[int | None, typer.Option(help="Days until it expires; default never")] = None,
) -> None:
    """Create a key and print it once: store it now, it cannot be shown again."""
    try:
        request = ApiKeyCreate(
            name=name, scopes=[s.strip() for s in scopes.split(",") if s.strip()], expires_in_days=expires_in_days
        )
    except ValidationError as e:
        _fail("; ".join(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}" for err in e.errors()), 2)
    created, stored = api_keys.issue(request)
    store = _store()
    try:
        if not store.add(ApiKeyInfo.model_validate(created.model_dump(exclude={"key"})), stored):
            _fail(f"key id {created.id} is taken (vanishingly rare): run the command again")
    except BackendUnavailable as e:
        _fail(str(e))
    typer.echo(created.key)
    typer.secho(f"key {created.id} ({created.name}: {', '.join(created.scopes)}); shown only now", err=True)


@app.command("list")
def list_keys() -> None:
    """Every key: id, name, scopes, state, last use, expiry (never the key)."""
    try:
        for k in _store().list():
            typer.echo(_line(k))
    except BackendUnavailable as e:
        _fail(str(e))


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (from `observatory keys list`)")],
) -> None:
    """Revoke a key; every app refuses it within a few seconds."""
    try:
        info = _store().revoke(key_id)
    except BackendUnavailable as e:
        _fail(str(e))
    if info is None:
        _fail(f"no API key {key_id}; see `observatory keys list`", 1)
    typer.echo(f"revoked {info.id} ({info.name})")
