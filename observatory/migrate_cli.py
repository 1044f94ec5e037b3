"""`observatory migrate [--check]`: bring every schema the settings select to this release's newest."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy.exc
import typer

from observatory.schema import migrate_all
from observatory.settings import Settings


def migrate(
    check: Annotated[
        bool, typer.Option("--check", help="Only report; exit 1 if a schema is behind (nothing is changed).")
    ] = False,
) -> None:
    """Apply the schema migrations (the observatory also applies them when it starts)."""
    settings = Settings()
    try:  # a schema newer than this release (SchemaTooNew) is one line and exit 1 by the CLI's main()
        states = migrate_all(settings, check)
    except sqlalchemy.exc.DBAPIError as e:
        typer.secho(f"error: cannot reach a database: {e.orig}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    for s in states:
        if not s.pending:
            verdict = "up to date"
        else:
            verdict = "needs migrating" if check else "migrated"
        typer.echo(f"{s.where}: {s.current or 'no schema yet'} -> {s.head}: {verdict}")
    behind = [s for s in states if s.pending]
    if check and behind:
        typer.secho(f"{len(behind)} schema(s) behind: run `observatory migrate`", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(1)
