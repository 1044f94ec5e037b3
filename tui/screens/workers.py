"""Workers (W): Ray's nodes, and the processors and aggregators with their node, state, load and last answer."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tui.client import Api, ApiError
from tui.format import age

REFRESH_S = 2.0
STATE_STYLE = {"alive": "green", "starting": "yellow", "restarted": "bold red"}
BUILTIN = ("CPU", "GPU", "memory", "object_store_memory")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _gib(size: float | None) -> str:
    return "-" if size is None else f"{size / 2**30:.1f} GiB"


def _custom(resources: dict[str, float]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in sorted(resources.items()) if k not in BUILTIN) or "-"


class WorkersScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    #workers-summary { height: auto; padding: 0 1; }
    #nodes { height: auto; max-height: 8; }
    #actors { height: 1fr; }
    #workers-status { height: 1; padding: 0 1; background: $boost; }
    """

    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="workers-summary")
        yield Static("Nodes", classes="title")
        yield DataTable(id="nodes", cursor_type="row")
        yield Static("Processors and aggregators", classes="title")
        yield DataTable(id="actors", cursor_type="row", zebra_stripes=True)
        yield Static("", id="workers-status")
        yield Footer()

    def on_mount(self) -> None:
        nodes = self.query_one("#nodes", DataTable)
        nodes.add_columns("node", "address", "state", "CPU", "GPU", "memory", "custom", "actors")
        actors = self.query_one("#actors", DataTable)
        actors.add_columns("name", "kind", "node", "state", "in flight", "handled", "restarts", "last seen", "pid")
        actors.focus()
        self.load()
        self.set_interval(REFRESH_S, self.load)

    def say(self, text: str) -> None:
        try:
            self.query_one("#workers-status", Static).update(text)
        except NoMatches:
            pass  # the screen is gone

    @work(exclusive=True, group="workers")
    async def load(self) -> None:
        try:
            view = await self.api.workers()
        except ApiError as e:
            self.say(f"{e} — the last answer stays shown; R retries")
            return
        try:
            self.show(view)
        except NoMatches:
            pass  # the user left the screen while the request was out

    def show(self, view: dict[str, Any]) -> None:
        w = view["workers"]
        now = self.app.clock()  # type: ignore[attr-defined]
        summary = Text()
        summary.append(f"processors: {w['actual']} alive of {w['desired']} desired ", style="bold")
        if w["actual"] < w["desired"]:
            summary.append("(short) ", style="bold red")
        summary.append(f"· min {w['min']}, max {w['max']}\n")
        nodes = len(view["nodes"])
        summary.append(f"aggregators: {w['aggregators']} · {nodes} node{'s' * (nodes != 1)}")
        summary.append(f" · as of the workers app's check {age(w['checked_at'], now)} ago")
        self.query_one("#workers-summary", Static).update(summary)
        self.show_nodes(view["nodes"])
        self.show_actors(w["actors"], now)
        self.say(f"{self.api.base_url} · refreshed every {REFRESH_S:g} s · Esc back")

    def show_nodes(self, nodes: list[dict[str, Any]]) -> None:
        table = self.query_one("#nodes", DataTable)
        table.clear()
        for n in nodes:
            r = n["resources"]
            state = ("alive" if n["alive"] else "dead") + (" · head" if n["is_head"] else "")
            table.add_row(
                n["node_id"][:8],
                n["address"],
                Text(state, style="green" if n["alive"] else "red"),
                _number(r.get("CPU")),
                _number(r.get("GPU")),
                _gib(r.get("memory")),
                _custom(r),
                str(len(n["actors"])),
                key=n["node_id"],
            )

    def show_actors(self, actors: list[dict[str, Any]], now: Any) -> None:
        table = self.query_one("#actors", DataTable)
        selected = table.cursor_row
        table.clear()
        for a in actors:
            table.add_row(
                a["name"],
                a["kind"],
                (a["node_id"] or "-")[:8],
                Text(a["state"], style=STATE_STYLE.get(a["state"], "")),
                _number(a.get("in_flight")),
                _number(a.get("handled")),
                str(a["restarts"]),
                age(a["last_seen"], now),
                _number(a.get("pid")),
                key=a["name"],
            )
        if actors:
            table.move_cursor(row=min(selected, len(actors) - 1))
