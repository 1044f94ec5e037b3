"""`observatory tui`: a live dashboard of the observatory that never blocks on the network."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from textual import work
from textual.app import App
from textual.binding import Binding

from kuberay import doctor
from tui.client import Api, HttpApi
from tui.screens.dashboard import DashboardScreen, JobChosen
from tui.screens.dead_letters import DeadLettersScreen
from tui.screens.help import HelpScreen
from tui.screens.job_detail import JobDetailScreen
from tui.screens.new_job import NewJobScreen
from tui.screens.workers import WorkersScreen

LAUNCH = [sys.executable, "-m", "observatory.cli", "up"]
LAUNCH_KIND = [sys.executable, "-m", "observatory.cli", "cluster", "up"]


class ObservatoryApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Distributed Task Observatory"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("r", "refresh", "Refresh"),
        Binding("n", "new_job", "New job"),
        Binding("d", "dead_letters", "Dead letters"),
        Binding("w", "workers", "Workers"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("l", "launch", "Launch", show=False),
        Binding("k", "launch_kind", "Launch on kind", show=False),
    ]

    def __init__(
        self,
        api: Api,
        launch_command: list[str] | None = None,
        clock: Callable[[], datetime] | None = None,
        kind_doctor: Callable[[], bool] = doctor.passes,
        kind_command: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.api = api
        self.clock = clock or (lambda: datetime.now(UTC))  # fixed in snapshot tests
        self.launch_command = launch_command or LAUNCH
        self.kind_command = kind_command or LAUNCH_KIND
        self.kind_doctor = kind_doctor
        self.launched: asyncio.subprocess.Process | None = None
        self.dashboard = DashboardScreen(api)

    def on_mount(self) -> None:
        self.push_screen(self.dashboard)
        self.check_kind()

    @work(thread=True, exclusive=True, group="doctor")
    def check_kind(self) -> None:
        """Offer "start on kind" only when `observatory cluster doctor` would pass (docker, kind, kubectl, helm)."""
        available = self.kind_doctor()
        self.call_from_thread(self._kind_checked, available)

    def _kind_checked(self, available: bool) -> None:
        self.dashboard.kind_available = available
        if available and not self.dashboard.reachable:
            self.dashboard.refresh_data()

    def on_job_chosen(self, message: JobChosen) -> None:
        self.push_screen(JobDetailScreen(self.api, message.job_id))

    def action_refresh(self) -> None:
        screen = self.screen
        if isinstance(screen, JobDetailScreen | DeadLettersScreen | WorkersScreen):
            screen.load()
        self.dashboard.refresh_data()

    def action_new_job(self) -> None:
        def opened(job_id: str | None) -> None:
            if job_id:
                self.push_screen(JobDetailScreen(self.api, job_id))

        self.push_screen(NewJobScreen(self.api), opened)

    def action_dead_letters(self) -> None:
        self.push_screen(DeadLettersScreen(self.api))

    def action_workers(self) -> None:
        if not isinstance(self.screen, WorkersScreen):
            self.push_screen(WorkersScreen(self.api))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_launch(self) -> None:
        if self.dashboard.reachable:
            self.dashboard.set_status(f"the API at {self.api.base_url} answers: nothing to start")
        elif self.launched is None:
            self.launch(self.launch_command, "observatory up")

    def action_launch_kind(self) -> None:
        if self.dashboard.reachable:
            self.dashboard.set_status(f"the API at {self.api.base_url} answers: nothing to start")
        elif not self.dashboard.kind_available:
            self.dashboard.set_status("kind is not available here: `observatory cluster doctor` says what is missing")
        elif self.launched is None:
            self.launch(self.kind_command, "observatory cluster up")

    @work(exclusive=True, group="launcher")
    async def launch(self, command: list[str], what: str) -> None:
        """Start the observatory (locally, or on kind) and show its progress in the status line."""
        self.dashboard.set_status(f"launcher: starting `{what}` …")
        self.launched = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert self.launched.stdout is not None
        async for raw in self.launched.stdout:
            line = raw.decode(errors="replace").strip()
            if line:
                self.dashboard.set_status(f"launcher: {line}")
            if line.startswith("ready."):
                self.dashboard.refresh_data()
        code = await self.launched.wait()
        self.dashboard.set_status(f"launcher: `{what}` ended (exit code {code})")
        self.launched = None

    async def on_unmount(self) -> None:
        # The observatory this TUI started is its child: stop it too, so nothing is left behind.
        if self.launched is not None and self.launched.returncode is None:
            self.launched.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.launched.wait(), 90)
            except TimeoutError:
                self.launched.kill()


def run(api_url: str, api_key: str | None = None) -> None:
    ObservatoryApp(HttpApi(api_url, api_key=api_key)).run()
