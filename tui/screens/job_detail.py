"""One job: its fields, result or error, attempts, and the event timeline with the time between stages."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tui.client import Api, ApiError
from tui.format import STATUS_STYLE, gap, place, resources


class JobDetailScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    #fields { height: auto; padding: 0 1; }
    #attempts, #timeline { height: auto; max-height: 12; }
    .title { padding: 1 1 0 1; text-style: bold; }
    """

    def __init__(self, api: Api, job_id: str) -> None:
        super().__init__()
        self.api, self.job_id = api, job_id

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("loading…", id="fields")
            yield Static("Attempts", classes="title")
            yield DataTable(id="attempts")
            yield Static("Timeline", classes="title")
            yield DataTable(id="timeline")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#attempts", DataTable).add_columns("#", "worker", "ran in", "started", "took", "error")
        self.query_one("#timeline", DataTable).add_columns("at", "event", "status", "by", "since previous")
        self.load()

    @work(exclusive=True)
    async def load(self) -> None:
        try:
            job = await self.api.job(self.job_id)
            events = await self.api.events(self.job_id)
        except ApiError as e:
            job, events = None, []
            error = Text(str(e), style="red")
        try:
            if job is None:
                self.query_one("#fields", Static).update(error)
            else:
                self.show(job, events)
        except NoMatches:
            pass  # the user left the screen while the request was out: nothing to show it on

    def show(self, job: dict[str, Any], events: list[dict[str, Any]]) -> None:
        text = Text()
        text.append(f"{job['id']}  {job['type']}  ")
        text.append(job["status"], style=STATUS_STYLE.get(job["status"], ""))
        text.append(f"  attempts {job['attempts']}/{job['max_attempts']}  timeout {job['timeout_s']:g}s\n")
        text.append(f"resources {resources(job.get('resources'))}\n")
        text.append(f"created {job['created_at']}  correlation {job['correlation_id']}\n")
        text.append(f"payload {json.dumps(job['payload'])}\n")
        if job.get("result") is not None:
            text.append(f"result  {json.dumps(job['result'])}\n", style="green")
        if job.get("error"):
            text.append(f"error   {job['error']}\n", style="red")
        self.query_one("#fields", Static).update(text)
        attempts = self.query_one("#attempts", DataTable)
        attempts.clear()
        for a in job.get("attempt_history") or []:
            attempts.add_row(
                str(a["number"]),
                a["worker"],
                place(a),
                a["started_at"][11:23],
                gap(a["started_at"], a["finished_at"]),
                a.get("error") or "",
            )
        timeline = self.query_one("#timeline", DataTable)
        timeline.clear()
        previous = None
        for e in events:
            timeline.add_row(
                e["occurred_at"][11:23],
                e["event_type"],
                e["payload"]["status"],
                e["producer"]["service"],
                gap(previous, e["occurred_at"]),
            )
            previous = e["occurred_at"]
