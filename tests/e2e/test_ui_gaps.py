"""The UI pages of issue 16 in a real chromium against a real `taskstate serve` (3 slots):
a failed task's traceback and the timeline drawn in time, the start form's advanced options,
history's page in the address, slot use per worker, the questions inbox. Several tasks run at
once in each. Screenshots go to TASKSTATE_SCREENS (default: the tests' output directory)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.api import create_task
from tests.support.browser import (
    BrowserPage,
    missing_browser,
    open_dashboard,
    open_page,
    page_errors,
    wait_js,
)
from tests.support.processes import ServerProcess
from tests.support.waits import wait_for_task

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SLOTS = 3
DASH = "\N{EN DASH}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """One `taskstate serve` on SQLite for the module, with SLOTS jobs at once."""
    if missing_browser():
        pytest.skip(missing_browser() or "")
    workdir = tmp_path_factory.mktemp("ui-gaps")
    process = ServerProcess(
        f"sqlite+aiosqlite:///{workdir / 'taskstate.db'}", workdir, MAX_CONCURRENT_TASKS=SLOTS
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop_quietly()


@pytest.fixture(scope="module")
def screens(output_dir: Path) -> Path:
    path = Path(os.environ.get("TASKSTATE_SCREENS", output_dir))
    path.mkdir(parents=True, exist_ok=True)
    return path


async def snap(ui: BrowserPage, screens: Path, name: str, locator: Any = None) -> None:
    target = locator if locator is not None else ui.page
    if locator is None:
        await ui.page.screenshot(path=screens / f"{name}.png", full_page=True)
    else:
        # Tall enough for the whole element: a scrolled shot would have the sticky header over it.
        size = ui.page.viewport_size
        await ui.page.set_viewport_size({"width": 1280, "height": 2000})
        await target.screenshot(path=screens / f"{name}.png")
        if size:
            await ui.page.set_viewport_size(size)


async def bar_rows(ui: BrowserPage) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await ui.page.eval_on_selector_all(
        "ts-task-timeline .bar-row",
        "rows => rows.map(r => ({state: r.dataset.state, seconds: +r.dataset.seconds,"
        " left: +r.dataset.left, width: +r.dataset.width, live: r.classList.contains('bar-live'),"
        " rect: r.querySelector('rect').getBoundingClientRect().width}))",
    )
    return rows


# -- the task page: traceback and timeline bars ----------------------------------------------


async def test_failed_tasks_show_their_own_traceback_folded(
    ui: BrowserPage, api: httpx.AsyncClient, screens: Path
) -> None:
    tags = [f"tb{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    failing = await asyncio.gather(
        *(
            create_task(api, "test.fail", name=f"import batch {i}", params={"depth": 12 + i, "tag": tag})
            for i, tag in enumerate(tags)
        )
    )
    for task in failing:
        await wait_for_task(api, task["id"], "failed", within=20)
    page = ui.page
    for tag, task in zip(tags, failing, strict=True):
        await page.goto(ui.url(f"#/tasks/{task['id']}"))
        block = page.locator("ts-task-report details.traceback")
        await block.wait_for()
        assert await block.get_attribute("open") is None, "folded until asked for"
        text = page.locator("ts-task-report .traceback-text")
        assert not await text.is_visible()
        await block.locator("summary").click()
        assert await text.is_visible()
        shown = await text.text_content() or ""
        assert "in descend_and_raise" in shown and "raise ValueError(message)" in shown
        assert shown.rstrip().endswith(f"ValueError: failure {tag}")
        assert all(other not in shown for other in tags if other != tag)
    # The last one, with its bars: queued, preparing, running, then the final point.
    rows = await bar_rows(ui)
    assert [r["state"] for r in rows] == ["queued", "preparing", "running", "failed"]
    assert sum(r["width"] for r in rows) == pytest.approx(100, abs=0.1)
    assert rows[-1]["width"] == 0 and not any(r["live"] for r in rows)
    await snap(ui, screens, "task-page-traceback")
    assert page_errors(ui) == []


async def test_a_failure_seen_live_brings_its_traceback(ui: BrowserPage, api: httpx.AsyncClient) -> None:
    """The page is open before the job fails: the event carries no traceback, the page reads it."""
    run_at = (datetime.now().astimezone() + timedelta(seconds=3)).isoformat()
    task = await create_task(
        api, "test.fail", name="fails while watched", params={"tag": "live"}, run_at=run_at
    )
    page = ui.page
    await page.goto(ui.url(f"#/tasks/{task['id']}"))
    await page.wait_for_selector("ts-task-page[data-state=queued]")
    assert await page.locator("ts-task-report details.traceback").count() == 0
    await page.wait_for_selector("ts-task-page[data-state=failed]", timeout=20_000)
    await page.locator("ts-task-report details.traceback").wait_for()
    assert "ValueError: failure live" in (await page.locator(".traceback-text").text_content() or "")
    assert page_errors(ui) == []


async def test_the_timeline_bars_grow_while_the_task_runs(
    ui: BrowserPage, api: httpx.AsyncClient, screens: Path
) -> None:
    tasks = await asyncio.gather(
        *(
            create_task(api, "demo.sleep", name=f"render frames {i}", params={"seconds": 5, "steps": 10})
            for i in range(SLOTS)
        )
    )
    watched = tasks[0]
    await wait_for_task(api, watched["id"], "running", within=20)
    page = ui.page
    await page.goto(ui.url(f"#/tasks/{watched['id']}"))
    await page.wait_for_selector("ts-task-timeline .bar-row.bar-live[data-state=running]")
    before = next(r for r in await bar_rows(ui) if r["state"] == "running")
    # The bar is redrawn once a second, later on a loaded machine: wait for 1.5 s of growth
    # (the task runs 5 s) rather than for a fixed time.
    await page.wait_for_function(
        "least => { const r = document.querySelector("
        "'ts-task-timeline .bar-row.bar-live[data-state=running]');"
        " return r !== null && +r.dataset.seconds >= least; }",
        arg=before["seconds"] + 1.5,
        timeout=3500,
    )
    after_rows = await bar_rows(ui)
    after = next(r for r in after_rows if r["state"] == "running")
    assert after["seconds"] >= before["seconds"] + 1.5, (before, after)
    assert after["width"] > before["width"], "the running bar takes more of the axis as time goes"
    assert after["rect"] > before["rect"]
    queued = after_rows[0]
    assert queued["state"] == "queued" and queued["left"] == 0
    await snap(ui, screens, "task-page-timeline-running", page.locator("ts-task-timeline"))
    done = await wait_for_task(api, watched["id"], "completed", within=20)
    await page.wait_for_selector("ts-task-page[data-state=completed]")
    await page.wait_for_selector("ts-task-timeline .bar-row[data-state=completed]")
    final = await bar_rows(ui)
    assert [r["state"] for r in final] == ["queued", "preparing", "running", "collecting", "completed"]
    assert not any(r["live"] for r in final)
    spans = {r["state"]: r["seconds"] for r in final}
    assert spans["running"] == pytest.approx(done["phase_results"]["running"], abs=0.05)
    for task in tasks:
        await wait_for_task(api, task["id"], "completed", within=20)
    assert page_errors(ui) == []


# -- the start form's advanced options --------------------------------------------------------


async def fill_start(ui: BrowserPage, name: str) -> None:
    page = ui.page
    await page.select_option("#start-type", "demo.sleep")
    await page.fill("#start-name", name)
    await page.get_by_label("Seconds").fill("0.2")


async def tasks_named(api: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await api.get("/api/v2/tasks", params={"q": name})).json()["items"]
    return items


async def test_start_form_advanced_options(ui: BrowserPage, api: httpx.AsyncClient, screens: Path) -> None:
    page = ui.page
    await open_dashboard(ui)
    advanced = page.locator("ts-start-task-form details.advanced-options")
    assert await advanced.get_attribute("open") is None, "folded by default"
    assert not await page.locator("#start-priority").is_visible()

    # Refused in the browser: inline, the section opens, nothing is sent.
    name = f"advanced {uuid.uuid4().hex[:6]}"
    await fill_start(ui, name)
    await page.locator("ts-start-task-form summary", has_text="Advanced").click()
    await page.fill("#start-max-attempts", "0")
    await page.fill("#start-priority", "1.5")
    await page.get_by_role("button", name="Start task").click()
    await page.locator("[data-error-for=max_attempts]", has_text="At least 1.").wait_for()
    assert await page.locator("[data-error-for=priority]").text_content() == "Enter a whole number."
    assert await page.locator("#start-priority").get_attribute("aria-invalid") == "true"
    assert await page.evaluate("document.activeElement.id") == "start-priority"
    await snap(ui, screens, "start-form-advanced-errors", page.locator("ts-start-task-form"))
    assert await tasks_named(api, name) == []

    # Valid: several tasks started from the form, each with its options.
    run_at = (datetime.now() + timedelta(hours=1)).replace(second=0, microsecond=0)
    await page.fill("#start-priority", "7")
    assert await page.locator("[data-error-for=priority]").text_content() == "", "cleared once edited"
    assert await page.locator("#start-priority").get_attribute("aria-invalid") is None
    await page.fill("#start-max-attempts", "5")
    await page.fill("#start-timeout-seconds", "30")
    await page.fill("#start-run-at", run_at.strftime("%Y-%m-%dT%H:%M"))
    await snap(ui, screens, "start-form-advanced", page.locator("ts-start-task-form"))
    await page.get_by_role("button", name="Start task").click()
    await page.locator("ts-start-task-form .form-status", has_text="Started").wait_for()
    assert await page.locator("[data-error-for=priority]").text_content() == ""
    await page.fill("#start-run-at", "")
    for n, priority in enumerate(("-3", "12")):
        await fill_start(ui, f"{name} now {n}")
        await page.fill("#start-priority", priority)
        await page.get_by_role("button", name="Start task").click()
        await page.locator("ts-start-task-form .form-status", has_text=f"{name} now {n}").wait_for()
    [later] = [t for t in await tasks_named(api, name) if t["name"] == name]
    assert (later["priority"], later["max_attempts"], later["timeout_seconds"]) == (7, 5, 30)
    assert datetime.fromisoformat(later["run_at"]) == run_at.astimezone()
    assert later["state"] == "queued", "not before its run_at"
    for n, priority in enumerate((-3, 12)):
        [now] = await tasks_named(api, f"{name} now {n}")
        assert (now["priority"], now["max_attempts"]) == (priority, 5)
        assert (await wait_for_task(api, now["id"], within=20))["state"] == "completed"
    await api.post(f"/api/v2/tasks/{later['id']}/cancel")
    assert page_errors(ui) == []


async def test_start_form_shows_a_server_refusal_beside_its_field(
    browser: Any, server: ServerProcess
) -> None:
    """An instant the browser can write but UTC cannot hold (9999-12-31 23:00 in New York is
    year 10000 in UTC): the browser sends it, the server's 422 comes back under "Run at"."""
    ui = await open_page(browser, server.url)
    await ui.context.close()
    context = await browser.new_context(
        timezone_id="America/New_York", viewport={"width": 1280, "height": 900}
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(ui.url("#/"))
        await page.wait_for_selector("html[data-dashboard-restored]")
        await page.select_option("#start-type", "demo.noop")
        await page.locator("ts-start-task-form summary", has_text="Advanced").click()
        await page.fill("#start-run-at", "9999-12-31T23:00")
        await page.get_by_role("button", name="Start task").click()
        error = page.locator("[data-error-for=run_at]")
        await error.filter(has_text="datetime").wait_for()
        assert await page.locator("#start-run-at").get_attribute("aria-invalid") == "true"
        assert "refused" in (await page.locator("ts-start-task-form .form-error").text_content() or "")
    finally:
        await context.close()
    assert errors == []


# -- history: the page in the address ----------------------------------------------------------


async def test_history_page_survives_reload_back_forward_and_a_shared_link(
    browser: Any, ui: BrowserPage, api: httpx.AsyncClient, server: ServerProcess
) -> None:
    marker = uuid.uuid4().hex[:6]
    response = await api.post(
        "/api/v2/tasks/batch",
        json={"tasks": [{"type": "demo.noop", "name": f"hist {marker} {i:02d}"} for i in range(60)]},
    )
    assert response.status_code == 201, response.text
    for item in response.json()["items"]:
        await wait_for_task(api, item["id"], "completed", within=30)
    page = ui.page
    await page.goto(ui.url("#/history"))
    await page.get_by_label("Name").fill(f"hist {marker}")
    await page.get_by_role("button", name="Apply filters").click()
    summary = page.locator("ts-history-page .summary")
    first_names = page.locator("ts-task-table tbody tr .task-name")
    await summary.filter(has_text=f"1{DASH}25 of 60").wait_for()
    await page.get_by_role("button", name="Older →").click()
    await summary.filter(has_text=f"26{DASH}50 of 60").wait_for()
    assert "page=2" in page.url and "cursor=" in page.url and f"q=hist+{marker}" in page.url
    page_two = await first_names.all_text_contents()
    await page.get_by_role("button", name="Older →").click()
    await summary.filter(has_text=f"51{DASH}60 of 60").wait_for()
    page_three_url = page.url

    await page.reload()
    await summary.filter(has_text=f"51{DASH}60 of 60").wait_for()
    assert await page.get_by_label("Name").input_value() == f"hist {marker}"
    await page.go_back()
    await summary.filter(has_text=f"26{DASH}50 of 60").wait_for()
    assert await first_names.all_text_contents() == page_two
    await page.go_back()
    await summary.filter(has_text=f"1{DASH}25 of 60").wait_for()
    await page.go_forward()
    await summary.filter(has_text=f"26{DASH}50 of 60").wait_for()
    # "← Newer" after a reload: this tab remembers the way back.
    await page.go_forward()
    await summary.filter(has_text=f"51{DASH}60 of 60").wait_for()
    await page.get_by_role("button", name="← Newer").click()
    await summary.filter(has_text=f"26{DASH}50 of 60").wait_for()
    assert page_errors(ui) == []

    # The link opened elsewhere (a fresh browser context) shows the same page.
    shared = await open_page(browser, server.url)
    try:
        await shared.page.goto(page_three_url)
        other = shared.page.locator("ts-history-page .summary")
        await other.filter(has_text=f"51{DASH}60 of 60").wait_for()
        newest = shared.page.get_by_role("button", name="⇤ Newest")
        await newest.click()
        await other.filter(has_text=f"1{DASH}25 of 60").wait_for()
        assert "cursor=" not in shared.page.url
        # A cursor this server never issued: the error is said, and the way back is open.
        await shared.page.goto(page_three_url.replace("cursor=", "cursor=x"))
        await shared.page.locator("ts-history-page .form-error", has_text="cursor").wait_for()
        assert await shared.page.get_by_role("button", name="⇤ Newest").is_enabled()
        assert page_errors(shared) == []
    finally:
        await shared.context.close()


# -- workers: slot use -------------------------------------------------------------------------


async def test_workers_page_shows_slot_use(ui: BrowserPage, api: httpx.AsyncClient, screens: Path) -> None:
    tasks = await asyncio.gather(
        *(
            create_task(api, "demo.sleep", name=f"transcode {i}", params={"seconds": 30, "steps": 30})
            for i in range(SLOTS + 2)
        )
    )
    page = ui.page
    await page.goto(ui.url("#/workers"))
    row = page.locator("ts-workers-page tr[data-state=running]")
    await row.locator(".slot-text", has_text=f"{SLOTS} of {SLOTS}").wait_for(timeout=20_000)
    meter = row.locator("meter")
    assert await meter.evaluate("m => [m.value, m.max]") == [SLOTS, SLOTS]
    assert await meter.get_attribute("aria-label") == f"{SLOTS} of {SLOTS} slots in use"
    assert f"{SLOTS} of {SLOTS} slots in use" in (
        await page.locator("ts-workers-page .summary").text_content() or ""
    )
    listed = (await api.get("/api/v2/workers")).json()["items"]
    [live] = [w for w in listed if w["state"] == "running"]
    assert (live["slots"], live["slots_used"]) == (SLOTS, SLOTS)
    await snap(ui, screens, "workers-slots")
    for task in tasks:
        await api.post(f"/api/v2/tasks/{task['id']}/cancel")
    await page.get_by_role("button", name="Refresh").click()
    await row.locator(".slot-text", has_text=f"0 of {SLOTS}").wait_for(timeout=15_000)
    assert page_errors(ui) == []


# -- the questions inbox -----------------------------------------------------------------------


async def test_questions_inbox_lists_and_answers_questions_of_several_tasks(
    ui: BrowserPage, api: httpx.AsyncClient, screens: Path
) -> None:
    marker = uuid.uuid4().hex[:6]
    with_choices = [
        await create_task(
            api, "demo.ask", name=f"{marker} deploy {i}", params={"question": f"Deploy {marker} #{i}?"}
        )
        for i in range(2)
    ]
    free = await create_task(
        api, "demo.ask", name=f"{marker} label", params={"question": f"Label for {marker}?", "choices": []}
    )
    page = ui.page
    await page.goto(ui.url("#/questions"))
    mine = page.locator("ts-questions-page article.question", has_text=marker)
    await wait_js(ui, "n => document.querySelectorAll('ts-questions-page article.question').length >= n", 3)
    assert await mine.count() == 3
    await snap(ui, screens, "questions-inbox")

    # A person types an answer, then answers another question first: the list re-renders
    # as that one goes (and again when its request returns), and what was typed stays (a
    # re-render once emptied the box between the typing and the click, in CI).
    label = page.locator(f"ts-questions-page article[data-task-id='{free['id']}']")
    box = label.get_by_label("Your answer")
    await box.fill("blue-green")
    first = page.locator(f"ts-questions-page article[data-task-id='{with_choices[0]['id']}']")
    await first.get_by_role("button", name="yes").click()
    await first.wait_for(state="detached")
    await wait_js(ui, "() => !document.querySelector('ts-questions-page button:disabled')")
    assert await box.input_value() == "blue-green"
    await label.get_by_role("button", name="Answer").click()
    await label.wait_for(state="detached")
    assert await mine.count() == 1, "the third question still waits"
    assert (await wait_for_task(api, with_choices[0]["id"], within=15))["result"] == {"answer": "yes"}
    assert (await wait_for_task(api, free["id"], within=15))["result"] == {"answer": "blue-green"}
    assert (await api.get(f"/api/v2/tasks/{with_choices[1]['id']}")).json()["waiting_for_input"] is True
    await api.post(f"/api/v2/tasks/{with_choices[1]['id']}/cancel")
    await mine.first.wait_for(state="detached")
    assert page_errors(ui) == []
