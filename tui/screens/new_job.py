"""New job: pick a type from /api/job-types, edit the payload as JSON, check it against the type's
schema before sending. Dismisses with the new job's id (or None when cancelled)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Select, Static, TextArea

from tui.client import Api, ApiError


def check_payload(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The payload, or None and a one-line reason."""
    try:
        payload = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        return None, f"not JSON: {e.msg} (line {e.lineno}, column {e.colno})"
    if not isinstance(payload, dict):
        return None, "the payload must be a JSON object"
    try:
        jsonschema.validate(payload, schema)
    except jsonschema.ValidationError as e:
        where = ".".join(map(str, e.absolute_path)) or "payload"
        return None, f"{where}: {e.message}"
    return payload, "ok"


class NewJobScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    NewJobScreen { align: center middle; }
    #dialog { width: 70; height: 22; border: thick $accent; padding: 1; background: $surface; }
    #payload { height: 8; }
    #message { height: 2; }
    #buttons { height: 3; align-horizontal: right; }
    """

    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api
        self.types: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("New job")
            yield Select([], prompt="job type", id="type")
            yield TextArea("{}", language="json", id="payload")
            yield Static("", id="message")
            with Horizontal(id="buttons"):
                yield Button("Submit", variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.load_types()

    @work(exclusive=True)
    async def load_types(self) -> None:
        try:
            types = await self.api.job_types()
        except ApiError as e:
            self.say(str(e), error=True)
            return
        if not self.is_attached:
            return  # the form was closed while the types were on their way
        self.types = {t["type"]: t for t in types}
        self.query_one("#type", Select).set_options([(f"{t['type']} — {t['description']}", t["type"]) for t in types])

    def say(self, text: str, error: bool = False) -> None:
        if not self.is_attached:
            return
        self.query_one("#message", Static).update(f"[red]{text}[/]" if error else text)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#submit")
    def _submit(self) -> None:
        chosen = self.query_one("#type", Select).value
        if not isinstance(chosen, str) or chosen not in self.types:
            self.say("choose a job type first", error=True)
            return
        payload, reason = check_payload(self.query_one("#payload", TextArea).text, self.types[chosen]["payload_schema"])
        if payload is None:
            self.say(reason, error=True)
            return
        self.send(chosen, payload)

    @work(exclusive=True)
    async def send(self, job_type: str, payload: dict[str, Any]) -> None:
        try:
            accepted = await self.api.submit(job_type, payload)
        except ApiError as e:
            self.say(str(e), error=True)
            return
        self.say(f"accepted: {accepted['job_id']}")
        self.dismiss(accepted["job_id"])
