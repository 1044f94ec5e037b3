"""The real TUI against a running observatory (both modes), driven through Textual's pilot."""

from __future__ import annotations

import pytest
from textual.widgets import Button, DataTable, Static, TextArea
from textual.worker import WorkerCancelled

from tests.helpers import wait_for
from tui.app import ObservatoryApp
from tui.client import HttpApi
from tui.screens.dead_letters import DeadLettersScreen
from tui.screens.job_detail import JobDetailScreen
from tui.screens.new_job import NewJobScreen

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

SIZE = (100, 30)


async def settle(app: ObservatoryApp, pilot, rounds: int = 1) -> None:
    for _ in range(rounds):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # an exclusive refresh replaced by a newer one: expected while the dashboard polls
        await pilot.pause(0.2)


async def until(app: ObservatoryApp, pilot, check, what: str, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s / 0.5)):
        app.action_refresh()
        await settle(app, pilot)
        if check():
            return
        await pilot.pause(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def test_submit_through_the_form_see_it_complete_and_open_its_detail(api):
    app = ObservatoryApp(HttpApi(str(api.base_url)))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, NewJobScreen)
        form.query_one("#type").value = "primes"
        form.query_one("#payload", TextArea).text = '{"limit": 1000}'
        form.query_one("#submit", Button).press()
        await settle(app, pilot, 2)

        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        job_id = detail.job_id

        def completed() -> bool:
            app.screen.load()
            return "COMPLETED" in str(app.screen.query_one("#fields", Static).render())

        await until(app, pilot, completed, "the job to complete in its detail view")
        assert '"count": 168' in str(detail.query_one("#fields", Static).render())
        assert detail.query_one("#timeline", DataTable).row_count >= 2

        await pilot.press("escape")
        table = app.screen.query_one("#jobs", DataTable)
        await until(app, pilot, lambda: job_id in [k.value for k in table.rows], "the job in the dashboard table")


async def test_an_alert_shows_and_the_dead_letter_is_requeued(api):
    failing = {"type": "sleep", "payload": {"seconds": 0, "fail_probability": 1}, "max_attempts": 1}
    job_id = api.post("/api/jobs", json=failing).json()["job_id"]
    app = ObservatoryApp(HttpApi(str(api.base_url)))
    async with app.run_test(size=SIZE) as pilot:
        alerts = app.dashboard

        await until(
            app,
            pilot,
            lambda: "DeadLetterQueueNotEmpty" in str(alerts.query_one("#alerts", Static).render()),
            "the DLQ alert on the dashboard",
        )

        await pilot.press("d")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DeadLettersScreen)
        table = screen.query_one("#letters", DataTable)
        keys = [k.value for k in table.rows]
        assert job_id in keys
        table.move_cursor(row=keys.index(job_id))
        await pilot.press("u")
        await settle(app, pilot, 2)

        assert f"requeued {job_id[:8]}" in str(screen.query_one("#dlq-status", Static).render())
    # The requeued job really ran again: a second attempt, failing again (max_attempts=1), dead-lettered anew.
    wait_for(
        lambda: (j := api.get(f"/read/jobs/{job_id}").json())["status"] == "DEAD_LETTERED" and j["attempts"] == 2,
        "the requeued job's second attempt",
        60,
    )
