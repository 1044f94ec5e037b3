"""The web dashboard in a real browser (Debian's headless chromium through chromedriver), in both modes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.helpers import final_jobs, wait_for, workers_arg

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DESKTOP, PHONE = (1280, 800), (390, 844)
WAIT_S = 60


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium and chromedriver are needed: run scripts/browser.sh (the test command does)")
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(options=options, service=Service(driver))
    b.set_page_load_timeout(60)
    yield b
    b.quit()


def until(check: Any, what: str, timeout_s: float = WAIT_S) -> Any:
    def attempt() -> Any:
        try:
            return check()
        except (StaleElementReferenceException, WebDriverException):
            return None  # the page re-rendered under us: look again

    return wait_for(attempt, what, timeout_s)


def text(b: WebDriver, css: str) -> str:
    """The element's text, or "" while it is missing or being re-rendered."""
    try:
        found = b.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def open_page(b: WebDriver, api: httpx.Client, fragment: str = "#/") -> None:
    """A fresh load of the page (the same URL twice would only keep the old page)."""
    b.get("about:blank")
    b.get(f"{api.base_url}/{fragment}")
    until(lambda: b.execute_script("return document.readyState") == "complete", "the page to load")


def errors(b: WebDriver) -> list[dict[str, Any]]:
    """Console errors and failed requests (chromium logs both as SEVERE) since the last call."""
    return [e for e in b.get_log("browser") if e["level"] == "SEVERE"]


def submit(api: httpx.Client, job: dict[str, Any]) -> str:
    r = api.post("/api/jobs", json=job)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def card(b: WebDriver, stat: str) -> str:
    return text(b, f'[data-stat="{stat}"] .n')


CARDS = ("total_jobs", "pending", "running", "retrying", "completed", "failed", "dead_lettered", "cancelled")


def cards(b: WebDriver) -> dict[str, str]:
    """Every stat card's number, read in one script so that a re-render cannot fall between two of them."""
    return dict(
        b.execute_script(
            "return [...document.querySelectorAll('[data-stat]')]"
            ".map((c) => [c.dataset.stat, c.querySelector('.n').textContent])"
        )
    )


def test_the_overview_equals_the_stats_and_follows_new_jobs_without_a_reload(browser, api):
    open_page(browser, api)
    browser.execute_script("window.notReloaded = true")
    stats: dict[str, Any] = {}
    shown: dict[str, str] = {}

    def equal() -> bool:  # every card against /read/stats asked at the same moment
        nonlocal stats, shown
        stats, shown = api.get("/read/stats").json(), cards(browser)
        return shown == {stat: str(stats[stat]) for stat in CARDS}

    wait_for(equal, "the cards to equal /read/stats", WAIT_S, lambda: f"cards {shown}, /read/stats {stats}")

    ids = [submit(api, {"type": "hash", "payload": {"data": f"web-{i}"}}) for i in range(3)]
    until(lambda: card(browser, "total_jobs") == str(stats["total_jobs"] + 3), "the total to grow by itself")
    until(
        lambda: all(browser.find_elements(By.CSS_SELECTOR, f'#recent [data-job="{i}"]') for i in ids), "new jobs listed"
    )

    def settled() -> bool:
        s = api.get("/read/stats").json()
        return s["completed"] >= stats["completed"] + 3 and card(browser, "completed") == str(s["completed"])

    until(settled, "the completed card to follow the jobs")
    assert browser.execute_script("return window.notReloaded === true")
    assert browser.find_elements(By.CSS_SELECTOR, "#throughput svg.chart")
    until(lambda: all(q in text(browser, "#queues") for q in ("jobs", "inline", "events")), "the queues table")


def fill_form(b: WebDriver, api: httpx.Client, job_type: str, field: str, value: str) -> None:
    """Open Submit, pick the type, type `value` into the field generated for `field`, submit."""
    open_page(b, api, "#/submit")
    until(lambda: len(Select(b.find_element(By.ID, "s-type")).options) >= 5, "the job types")
    Select(b.find_element(By.ID, "s-type")).select_by_value(job_type)
    box = until(lambda: b.find_element(By.ID, f"p-{field}"), "the form generated from the schema")
    box.clear()
    box.send_keys(value)
    b.find_element(By.ID, "submit").click()


def test_a_job_submitted_through_the_form_completes_on_its_detail_page(browser, api):
    fill_form(browser, api, "primes", "limit", "1000")
    until(lambda: browser.current_url.split("#/jobs/")[-1] if "#/jobs/" in browser.current_url else None, "the detail")
    job_id = browser.current_url.split("#/jobs/")[-1]
    until(lambda: text(browser, "#job-status") == "COMPLETED", "COMPLETED, live on the detail page")
    until(lambda: '"count": 168' in text(browser, "#result"), "the result, formatted")
    assert api.get(f"/read/jobs/{job_id}").json()["result"] == {"limit": 1000, "count": 168}
    until(lambda: "job.completed" in text(browser, "#events"), "the event history")
    assert browser.find_elements(By.CSS_SELECTOR, '.tl-row[data-attempt="1"]')
    job = api.get(f"/read/jobs/{job_id}").json()
    attempt = job["attempt_history"][0]
    assert attempt["executor"] and attempt["node"]  # the process and node that ran the handler, as the API tells it
    place = f"ran in {attempt['executor']} · node {attempt['node'][:8]}"
    until(lambda: text(browser, '.tl-row[data-attempt="1"] [data-field="place"]') == f"· {place}", "where it ran")
    assert job["resources"] == {"cpus": 1, "memory_mib": 0, "gpus": 0, "custom": {}}  # primes' default: one core
    until(lambda: "\nresources\n1 CPU\n" in text(browser, "dl.kv"), "what it asks Ray for")
    assert "curl -X POST" in text(browser, "#curl") and '"limit":1000' in text(browser, "#curl")


def test_a_422_is_shown_next_to_the_field_it_names(browser, api):
    fill_form(browser, api, "sleep", "seconds", "-5")
    message = until(lambda: text(browser, '[id="err-payload.seconds"]'), "the error next to `seconds`")
    assert "greater than or equal to 0" in message
    assert "#/submit" in browser.current_url
    errors(browser)  # the 422 itself is logged by chromium as a failed request: expected here


def test_cancel_a_long_sleep_from_its_detail_page(browser, api):
    job_id = submit(api, {"type": "sleep", "payload": {"seconds": 120}})
    open_page(browser, api, f"#/jobs/{job_id}")
    until(lambda: text(browser, "#job-status") in ("RUNNING", "PENDING"), "the job active")
    # found and clicked in one go: the live page may re-render between two steps
    until(lambda: browser.find_element(By.ID, "cancel").click() or True, "a click on Cancel")
    until(lambda: text(browser, "#job-status") == "CANCELLED", "CANCELLED on the page")
    assert api.get(f"/read/jobs/{job_id}").json()["status"] == "CANCELLED"
    assert not browser.find_elements(By.ID, "cancel")


def test_the_read_models_alert_shows_on_the_overview(browser, api):
    submit(api, {"type": "sleep", "payload": {"seconds": 0, "fail_probability": 1}, "max_attempts": 1})
    open_page(browser, api)
    alert = until(lambda: browser.find_element(By.CSS_SELECTOR, '[data-alert="DeadLetterQueueNotEmpty"]'), "the alert")
    assert "warning" in alert.text.lower() and "runbook" in alert.text


def test_dead_letters_are_requeued_from_their_page_until_they_complete(browser, api):
    """Jobs that fail half the time: the dead-lettered ones are requeued from the page (selected, then
    "Requeue selected") until each has completed on a later attempt."""
    ids = [
        submit(api, {"type": "sleep", "payload": {"seconds": 0, "fail_probability": 0.5}, "max_attempts": 1})
        for _ in range(20)
    ]

    def final() -> dict[str, dict[str, Any]] | None:
        jobs = {i: api.get(f"/read/jobs/{i}").json() for i in ids}
        return jobs if all(j["status"] in ("COMPLETED", "DEAD_LETTERED") for j in jobs.values()) else None

    jobs = until(final, "every job final")
    dead = [i for i, j in jobs.items() if j["status"] == "DEAD_LETTERED"]
    assert dead, "not one of 20 jobs failed at 50% (one chance in a million)"
    requeued = set()
    for _ in range(20):
        dead = [i for i, j in jobs.items() if j["status"] == "DEAD_LETTERED"]
        if not dead:
            break
        open_page(browser, api, "#/dlq")
        for job_id in dead:
            box = until(
                lambda job_id=job_id: browser.find_element(By.CSS_SELECTOR, f'input[value="{job_id}"]'), "listed"
            )
            box.click()
        browser.find_element(By.ID, "requeue-selected").click()
        until(lambda: "Requeued" in text(browser, "#dlq-status"), "the page to say so")
        requeued |= set(dead)
        jobs = until(final, "the requeued jobs final again")
    assert requeued and all(jobs[i]["status"] == "COMPLETED" and jobs[i]["attempts"] >= 2 for i in requeued)


def test_dead_letters_page_by_page(browser, api, truth):
    for i in range(55):  # messages that never became jobs, the newest last
        truth.jobs.dead_letter(None, None, "unreadable message", f"paging-{i:02d}")
    open_page(browser, api, "#/dlq")
    until(lambda: "paging-54" in text(browser, "#dlq-list"), "the newest letter on the first page")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dlq-list tbody tr")) == 50
    assert "paging-00" not in text(browser, "#dlq-list")
    assert browser.find_element(By.ID, "dlq-first").get_attribute("disabled") is not None
    browser.find_element(By.ID, "dlq-next").click()
    until(lambda: "paging-00" in text(browser, "#dlq-list"), "the oldest letters on the next page")
    assert "paging-54" not in text(browser, "#dlq-list")
    browser.find_element(By.ID, "dlq-first").click()
    until(lambda: "paging-54" in text(browser, "#dlq-list"), "back on the first page")


def handled(b: WebDriver) -> int | None:
    """The jobs the processors handled, summed from the Workers page; None while it is being re-rendered."""
    try:
        cells = b.find_elements(By.CSS_SELECTOR, '#worker-actors tr[data-kind="processor"] [data-field="handled"]')
        return sum(int(c.text) for c in cells) if cells else None
    except (StaleElementReferenceException, ValueError):
        return None


WORKERS_PAGE = """
const line = document.querySelector("#workers-line");
const node = document.querySelector(`#worker-nodes tr[data-node="${arguments[0]}"]`);
const states = document.querySelectorAll('#worker-actors tr[data-kind="processor"] [data-field="state"]');
const text = (e) => (e ? e.innerText : "");
return {line: text(line), node: text(node), states: [...states].map(text)};
"""


def workers_page(b: WebDriver, node_id: str) -> dict[str, Any]:
    """The Workers page's summary, node row and processor states, read in one script: the live page may
    re-render between two element reads."""
    return b.execute_script(WORKERS_PAGE, node_id)


def test_the_workers_page_shows_the_configured_processors_on_a_node_and_follows_their_work(browser, api):
    processors = workers_arg("processors")
    view = wait_for(
        lambda: (v := api.get("/read/workers").json())["workers"]["actual"] == processors and v,
        "every processor alive",
        WAIT_S,
    )
    node = view["nodes"][0]
    open_page(browser, api, "#/workers")
    browser.execute_script("window.notReloaded = true")

    def summary() -> dict[str, Any] | None:
        page = workers_page(browser, node["node_id"])
        return page if page["line"] not in ("", "Loading…") else None

    page = until(summary, "the summary")
    assert f"{processors} of {processors} processors alive" in page["line"] and "1 aggregator" in page["line"]
    assert page["states"] == ["alive"] * processors
    assert node["address"] in page["node"] and "alive" in page["node"] and "head" in page["node"]
    assert all(f"processor-{i}" in page["node"] for i in range(processors))
    assert browser.find_element(By.CSS_SELECTOR, 'nav a[data-page="workers"]').get_attribute("aria-current") == "page"

    before = until(lambda: (n := handled(browser)) is not None and [n], "the handled counts")[0]  # 0 counts too
    ids = [submit(api, {"type": "hash", "payload": {"data": f"workers-{i}"}}) for i in range(4)]
    wait_for(lambda: final_jobs(api, ids), "the jobs done", WAIT_S)
    until(lambda: (n := handled(browser)) is not None and n >= before + 4, "the handled counts to grow by themselves")
    assert browser.execute_script("return window.notReloaded === true")


def no_horizontal_scroll(b: WebDriver) -> bool:
    return b.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_no_console_errors_or_failed_requests_and_no_horizontal_scroll_at_both_sizes(browser, api, mode, request):
    job_id = submit(api, {"type": "hash", "payload": {"data": "shown"}})
    wait_for(lambda: api.get(f"/read/jobs/{job_id}").json()["status"] == "COMPLETED", "the job done", WAIT_S)
    errors(browser)
    pages = {
        "#/": "#cards .card",
        "#/jobs": "#job-list table",
        f"#/jobs/{job_id}": "#events",
        "#/dlq": "#dlq-list",
        "#/submit": "#p-data",
        "#/workers": "#worker-actors table",
    }
    for width, height in (DESKTOP, PHONE):
        browser.set_window_size(width, height)
        for fragment, ready in pages.items():
            open_page(browser, api, fragment)
            until(lambda ready=ready: browser.find_elements(By.CSS_SELECTOR, ready), f"{fragment} at {width}px")
            assert no_horizontal_scroll(browser), f"{fragment} scrolls sideways at {width}×{height}"
            assert errors(browser) == [], fragment
            pictured = ("#/", f"#/jobs/{job_id}")
            if (
                request.config.getoption("--screenshots")
                and width == DESKTOP[0]
                and mode[0] == "real"
                and fragment in pictured
            ):
                name = "overview" if fragment == "#/" else "job-detail"
                time.sleep(1.5)  # let the live charts and the timeline draw before the picture
                browser.save_screenshot(str(ROOT / "docs" / f"web-{name}.png"))
    browser.set_window_size(*DESKTOP)


def rows(b: WebDriver) -> list[str]:
    try:
        return [r.get_attribute("data-job") or "" for r in b.find_elements(By.CSS_SELECTOR, "#job-list tbody tr")]
    except StaleElementReferenceException:
        return []


def test_find_by_key_correlation_id_or_id_and_cursor_paging(browser, api):
    key, corr = f"web-key-{time.time_ns()}", f"web-corr-{time.time_ns()}"
    job_id = submit(api, {"type": "hash", "payload": {"data": "find me"}, "idempotency_key": key})
    r = api.post("/api/jobs", json={"type": "hash", "payload": {"data": "me too"}}, headers={"X-Correlation-Id": corr})
    other = r.json()["job_id"]
    for find, expected in ((key, [job_id]), (corr, [other]), (job_id, [job_id])):
        open_page(browser, api, f"#/jobs?find={find}")
        until(lambda expected=expected: rows(browser) == expected, f"found by {find}")

    batch = api.post("/api/jobs/batch", json={"jobs": [{"type": "noop", "payload": {}}] * 60})
    assert batch.status_code == 202
    total = len(api.get("/read/jobs", params={"type": "noop", "limit": 500}).json()["items"])  # the store's count
    open_page(browser, api, "#/jobs?type=noop")
    first = until(lambda: rows(browser) if len(rows(browser)) == 50 else None, "a first page of 50")
    until(lambda: browser.find_element(By.ID, "next-page").click() or True, "a click on Next page")
    second = until(lambda: (r := rows(browser)) and r != first and r, "the second page")
    assert not set(first) & set(second) and len(second) == min(50, total - 50)


def test_leaving_a_page_closes_its_live_stream(browser, api):
    """A page left with its stream open would hold one of chromium's six connections to the host until the
    stream ended (50 s): the seventh load in a row would wait that long."""
    browser.set_page_load_timeout(20)
    try:
        for load in range(8):
            open_page(browser, api, "#/")
            snapshot = f"load {load + 1}: the live stream's first snapshot"
            until(lambda: card(browser, "total_jobs") != "", snapshot, timeout_s=20)
    finally:
        browser.set_page_load_timeout(60)


def test_first_load_is_light(api):
    total = sum(len(api.get(p).content) for p in ("/", "/static/app.js", "/static/app.css", "/static/favicon.svg"))
    assert total < 300_000
    r = api.get("/static/nothing.js")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
