"""The keys, on `?`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = """\
Q  quit                 R  refresh now
N  new job              D  dead letters (U requeues the selected one)
W  workers: nodes, processors and aggregators
Enter  open the selected job                Esc  back
L  start the embedded observatory here (when the API is unreachable)
K  start it on kind as a KubeRay RayService (offered when `observatory cluster doctor` passes)
?  this help"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: 76; height: auto; border: thick $accent; padding: 1 2; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("Keys", classes="title")
            yield Static(KEYS)
