"""Dead letters: the list, and requeue of the selected entry."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tui.client import Api, ApiError
from tui.format import age


class DeadLettersScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("u", "requeue", "Requeue selected")]
    DEFAULT_CSS = """
    #letters { height: 1fr; }
    #dlq-status { height: 1; padding: 0 1; background: $boost; }
    """

    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="letters", cursor_type="row", zebra_stripes=True)
        yield Static("", id="dlq-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#letters", DataTable).add_columns("job", "type", "reason", "age")
        self.load()

    def say(self, text: str) -> None:
        try:
            self.query_one("#dlq-status", Static).update(text)
        except NoMatches:
            pass  # the screen is gone

    @work(exclusive=True, group="dlq")
    async def load(self, note: str = "") -> None:
        try:
            letters = await self.api.dead_letters()
        except ApiError as e:
            self.say(str(e))
            return
        try:
            self.show(letters, note)
        except NoMatches:
            pass  # the user left the screen while the request was out: nothing to show it on

    def show(self, letters: list[dict[str, Any]], note: str) -> None:
        table = self.query_one("#letters", DataTable)
        table.clear()
        for d in letters:
            job = d["job_id"] or "(unreadable message)"
            table.add_row(
                job[:8] if d["job_id"] else job,
                d["job_type"] or "-",
                d["reason"][:80],
                age(d["created_at"], self.app.clock()),  # type: ignore[attr-defined]
                key=d["job_id"] or d["id"],
            )
        self.say(f"{note + ' · ' if note else ''}{len(letters)} dead letters · U requeues the selected one")

    def action_requeue(self) -> None:
        table = self.query_one("#letters", DataTable)
        if table.row_count == 0:
            self.say("nothing to requeue")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.requeue(key)

    @work(exclusive=True, group="requeue")
    async def requeue(self, job_id: str | None) -> None:
        try:
            job = await self.api.requeue(job_id or "")
        except ApiError as e:
            self.say(str(e))
            return
        self.load(note=f"requeued {job['id'][:8]}: {job['status']}")
