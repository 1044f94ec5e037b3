"""The TUI with fixed data: behaviour through Textual's pilot, and snapshots of the main screens."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest
from textual.widgets import Button, DataTable, Static, TextArea

from contracts import WorkersView
from tests.tui_fixtures import DEAD, JOB, WORKERS, FixedApi
from tui.app import ObservatoryApp
from tui.screens.dead_letters import DeadLettersScreen
from tui.screens.help import HelpScreen
from tui.screens.job_detail import JobDetailScreen
from tui.screens.new_job import NewJobScreen, check_payload
from tui.screens.workers import WorkersScreen

SIZE = (100, 30)
NOW = datetime(2026, 11, 29, 10, 5, tzinfo=UTC)


def fixed_app(api: FixedApi | None = None, kind: bool = False) -> ObservatoryApp:
    return ObservatoryApp(
        api or FixedApi(),
        launch_command=["true"],
        clock=lambda: NOW,
        kind_doctor=lambda: kind,
        kind_command=[sys.executable, "-c", "print('creating the kind cluster')"],
    )


def text(app: ObservatoryApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


@pytest.mark.asyncio
async def test_dashboard_shows_stats_alerts_and_jobs():
    app = fixed_app()
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert "2 jobs" in text(app, "#stats") and "dead_lettered 1" in text(app, "#stats")
        assert "DeadLetterQueueNotEmpty" in text(app, "#alerts")
        assert app.screen.query_one("#jobs", DataTable).row_count == 2


@pytest.mark.asyncio
async def test_enter_opens_the_job_detail_with_its_timeline():
    app = fixed_app()
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert isinstance(app.screen, JobDetailScreen) and app.screen.job_id == JOB["id"]
        assert app.screen.query_one("#timeline", DataTable).row_count == 3
        attempts = app.screen.query_one("#attempts", DataTable)
        assert attempts.get_row_at(0)[:3] == ["1", "processor-0", "4242@127.0.0.1 · node 6f1b7540"]
        assert "resources 1 CPU · 512 MiB · ssd=1\n" in str(app.screen.query_one("#fields", Static).render())
        await pilot.press("escape")
        assert not isinstance(app.screen, JobDetailScreen)


@pytest.mark.asyncio
async def test_new_job_form_checks_the_payload_before_sending():
    api = FixedApi()
    app = fixed_app(api)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await app.workers.wait_for_complete()
        form = app.screen
        assert isinstance(form, NewJobScreen)
        form.query_one("#type").value = "primes"
        form.query_one("#payload", TextArea).text = '{"limit": -1}'
        form.query_one("#submit", Button).press()
        await pilot.pause()
        assert "limit" in str(form.query_one("#message", Static).render()) and api.submitted == []

        form.query_one("#payload", TextArea).text = '{"limit": 100}'
        form.query_one("#submit", Button).press()
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert api.submitted == [("primes", {"limit": 100})]
        assert isinstance(app.screen, JobDetailScreen) and app.screen.job_id == JOB["id"]


@pytest.mark.asyncio
async def test_dead_letters_screen_requeues_the_selected_entry():
    api = FixedApi()
    app = fixed_app(api)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("d")
        await app.workers.wait_for_complete()
        assert isinstance(app.screen, DeadLettersScreen)
        await pilot.press("u")
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert api.requeued == [DEAD["id"]]
        assert "requeued" in text(app, "#dlq-status")


def cells(table: DataTable, row: str) -> list[str]:
    return [str(c) for c in table.get_row(row)]


@pytest.mark.asyncio
async def test_workers_screen_lists_nodes_and_workers_with_desired_against_alive():
    WorkersView.model_validate(WORKERS)  # the fixed data is what GET /read/workers answers
    app = fixed_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert isinstance(app.screen, WorkersScreen)
        assert "processors: 1 alive of 2 desired (short)" in text(app, "#workers-summary")
        assert "min 2, max 2" in text(app, "#workers-summary") and "aggregators: 1" in text(app, "#workers-summary")
        nodes = app.screen.query_one("#nodes", DataTable)
        assert nodes.row_count == 1
        node = cells(nodes, WORKERS["nodes"][0]["node_id"])
        assert node[1:6] == ["127.0.0.1", "alive · head", "4", "-", "8.0 GiB"]
        assert node[6:] == ["observatory-worker=1", "2"]  # two actors there
        actors = app.screen.query_one("#actors", DataTable)
        assert actors.row_count == 3
        # name, kind, node, state, in flight, handled, restarts, last seen (NOW is 10:05:00), pid
        assert cells(actors, "processor-0") == [
            "processor-0",
            "processor",
            "9a55f46e",
            "alive",
            "3",
            "120",
            "0",
            "5s",
            "1466",
        ]
        assert cells(actors, "processor-1")[3:8] == ["restarted", "-", "-", "1", "2m"]
        assert cells(actors, "aggregator-0")[3:6] == ["alive", "-", "360"]
        await pilot.press("escape")
        assert not isinstance(app.screen, WorkersScreen)


@pytest.mark.asyncio
async def test_workers_screen_says_when_the_workers_app_cannot_answer():
    app = fixed_app(FixedApi(workers_down=True))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert "workers app unavailable" in text(app, "#workers-status")
        assert app.screen.query_one("#actors", DataTable).row_count == 0


@pytest.mark.asyncio
async def test_help_names_the_workers_key():
    app = fixed_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()

        assert isinstance(app.screen, HelpScreen)
        assert any("W  workers" in str(s.render()) for s in app.screen.query(Static))


@pytest.mark.asyncio
async def test_unreachable_api_is_a_status_line_offering_the_launcher():
    app = fixed_app(FixedApi(reachable=False))
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "unreachable" in text(app, "#status-line") and "press L" in text(app, "#status-line")

        await pilot.press("l")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "launcher" in text(app, "#status-line")


@pytest.mark.asyncio
async def test_start_on_kind_is_offered_only_when_the_doctor_passes():
    app = fixed_app(FixedApi(reachable=False), kind=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "press L" in text(app, "#status-line") and "kind" not in text(app, "#status-line")
        await pilot.press("k")
        await pilot.pause()
        assert "cluster doctor" in text(app, "#status-line")

    app = fixed_app(FixedApi(reachable=False), kind=True)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert "K to start it on kind" in text(app, "#status-line")
        await pilot.press("k")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "launcher" in text(app, "#status-line")
        assert app.launched is None  # the command ran to its end: its exit is shown


@pytest.mark.parametrize(("payload", "ok"), [("{}", False), ('{"limit": 5}', True), ("[1]", False), ("{oops", False)])
def test_payload_check(payload: str, ok: bool):
    schema = {"type": "object", "properties": {"limit": {"type": "integer"}}, "required": ["limit"]}

    assert (check_payload(payload, schema)[0] is not None) is ok


def test_dashboard_snapshot(snap_compare):
    async def settle(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(100, 30), run_before=settle)


def test_job_detail_snapshot(snap_compare):
    async def open_job(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(100, 30), run_before=open_job)


def test_dead_letters_snapshot(snap_compare):
    async def open_dlq(pilot) -> None:
        await pilot.press("d")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(100, 30), run_before=open_dlq)


def test_workers_snapshot(snap_compare):
    async def open_workers(pilot) -> None:
        await pilot.press("w")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(100, 30), run_before=open_workers)
