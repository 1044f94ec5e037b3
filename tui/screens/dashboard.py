"""The dashboard: stats, throughput, active alerts, and the recent jobs, refreshed in the background."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Select, Sparkline, Static

from tui.client import Api, ApiError
from tui.format import SEVERITY_STYLE, STATUS_STYLE, age

STATUSES = ["PENDING", "RUNNING", "RETRYING", "COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"]
REFRESH_S = 2.0
HISTORY = 60  # throughput samples kept for the sparkline


class JobChosen(Message):
    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id


class DashboardScreen(Screen[None]):
    DEFAULT_CSS = """
    #top { height: 5; }
    #stats { width: 1fr; padding: 0 1; }
    #throughput-box { width: 40; }
    #alerts { height: auto; max-height: 6; padding: 0 1; }
    #filters { height: 3; }
    #filters Select { width: 24; }
    #filters Input { width: 24; }
    #jobs { height: 1fr; }
    #status-line { height: 1; padding: 0 1; background: $boost; }
    """

    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api
        self.finished: list[int] = []
        self.reachable = True
        self.kind_available = False  # set by the app once `observatory cluster doctor` passes

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            yield Static("loading…", id="stats")
            with Vertical(id="throughput-box"):
                yield Static("throughput (jobs finished per refresh)")
                yield Sparkline([], id="throughput")
        yield Static("", id="alerts")
        with Horizontal(id="filters"):
            yield Select([(s.title(), s) for s in STATUSES], prompt="any status", id="status-filter")
            yield Input(placeholder="type filter", id="type-filter")
        yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#jobs", DataTable)
        table.add_columns("id", "type", "status", "attempts", "age")
        table.focus()  # Enter opens the selected job straight away
        self.refresh_data()
        self.set_interval(REFRESH_S, self.refresh_data)

    @on(Select.Changed, "#status-filter")
    @on(Input.Changed, "#type-filter")
    def _filters_changed(self) -> None:
        self.refresh_data()

    @on(DataTable.RowSelected, "#jobs")
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.post_message(JobChosen(event.row_key.value))

    def filters(self) -> tuple[str | None, str | None]:
        status = self.query_one("#status-filter", Select).value
        job_type = self.query_one("#type-filter", Input).value.strip() or None
        return (status if isinstance(status, str) else None), job_type

    @work(exclusive=True)
    async def refresh_data(self) -> None:
        status, job_type = self.filters()
        try:
            stats = await self.api.stats()
            alerts = await self.api.alerts()
            jobs = await self.api.jobs(status, job_type)
        except ApiError as e:
            self.reachable = False
            kind = ", K to start it on kind" if self.kind_available else ""
            text = f"{e} — press L to start the embedded observatory here{kind}, R to retry"
            self.show_safely(lambda: self.set_status(text))
            return
        self.reachable = True

        def show() -> None:
            self.set_status(f"{self.api.base_url} · {len(jobs)} jobs shown")
            self.show_stats(stats)
            self.show_alerts(alerts)
            self.show_jobs(jobs)

        self.show_safely(show)

    @staticmethod
    def show_safely(show: Callable[[], None]) -> None:
        """Draw an answer that arrived late: the screen may have been unmounted meanwhile (the app closing,
        the screen replaced), and then there is nothing to draw it on."""
        try:
            show()
        except NoMatches:
            pass

    def now(self) -> datetime:
        return self.app.clock()  # type: ignore[attr-defined]

    def set_status(self, text: str) -> None:
        self.query_one("#status-line", Static).update(text)

    def show_stats(self, s: dict[str, Any]) -> None:
        line = Text(f"{s['total_jobs']} jobs  ")
        for status in STATUSES:
            line.append(f"{status.lower()} {s[status.lower()]}  ", style=STATUS_STYLE[status])
        types = "  ".join(f"{name}: {t['total']}" for name, t in s["by_type"].items())
        self.query_one("#stats", Static).update(Text.assemble(line, "\n", types, "\n", f"source: {s['source']}"))
        done = s["completed"] + s["failed"] + s["dead_lettered"] + s["cancelled"]
        self.finished = [*self.finished, done][-HISTORY - 1 :]
        deltas = [max(b - a, 0) for a, b in zip(self.finished, self.finished[1:], strict=False)]
        self.query_one("#throughput", Sparkline).data = deltas or [0]

    def show_alerts(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            self.query_one("#alerts", Static).update(Text("no active alerts", style="green"))
            return
        text = Text()
        for a in alerts:
            style = SEVERITY_STYLE.get(a["severity"], "")
            text.append(f"● {a['name']} ", style=style)
            text.append(f"[{a['severity']}, {a['source']}, since {age(a['since'], self.now())}] {a['summary']}\n")
        self.query_one("#alerts", Static).update(text)

    def show_jobs(self, jobs: list[dict[str, Any]]) -> None:
        table = self.query_one("#jobs", DataTable)
        selected = table.cursor_row
        table.clear()
        for j in jobs:
            status = Text(j["status"], style=STATUS_STYLE.get(j["status"], ""))
            table.add_row(
                j["id"][:8], j["type"], status, str(j["attempts"]), age(j["created_at"], self.now()), key=j["id"]
            )
        if jobs:
            table.move_cursor(row=min(selected, len(jobs) - 1))
