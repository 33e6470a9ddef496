"""The web UI in a real headless chromium against a real `taskstate serve`.

The scenarios of issue 6: live progress, restore on reload, the seed's founding bug (a page
opened after the task ended shows `completed`, never `running`), a server killed and
restarted under an open page, cancel, answering a question, hostile names rendered as text,
history, workers, the emergency reset, a phone-width screen, and the time from navigation
to a restored dashboard with 50 active tasks and 10,000 history rows.

Select with `pytest -m e2e`; skipped (with the reason) without chromium or playwright.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support.api import create_task
from tests.support.browser import (
    BrowserPage,
    card,
    open_dashboard,
    open_page,
    page_errors,
    progress_of,
    shot,
    wait_js,
)
from tests.support.processes import REPO, ServerProcess
from tests.support.waits import wait_for_task

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

XSS_NAME = "<img src=x onerror=alert(1)>"
DASH = "\N{EN DASH}"


# -- helpers ------------------------------------------------------------------------------------


# -- scenarios ----------------------------------------------------------------------------------


async def test_dashboard_screenshot(ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path) -> None:
    """A dashboard with a bit of everything; TASKSTATE_UPDATE_SCREENSHOT=1 also writes docs/dashboard.png."""
    finished = [
        await create_task(api, "demo.count", name="backfill invoices", params={"to": 6, "delay": 0.05}),
        await create_task(
            api, "demo.fail", name="sync CRM contacts", params={"message": "HTTP 503 from the CRM"}
        ),
        await create_task(api, "demo.sleep", name="resize thumbnails", params={"seconds": 60}),
        await create_task(api, "demo.noop", name="nightly ETL", trigger="scheduled"),
    ]
    await wait_for_task(api, finished[2]["id"], "running", within=20)
    await api.post(f"/api/v2/tasks/{finished[2]['id']}/cancel")
    for task in finished:
        await wait_for_task(api, task["id"], "completed", "failed", "cancelled", within=20)
    made = [
        await create_task(
            api, "demo.sleep", name="train resnet-50 (fold 3)", params={"seconds": 40, "steps": 200}
        ),
        await create_task(api, "demo.count", name="embed 20k documents", params={"to": 400, "delay": 0.05}),
        await create_task(
            api, "demo.ask", name="publish the quarterly report", params={"question": "Publish now?"}
        ),
        await create_task(api, "demo.serve", name="jupyter notebook", trigger="manual"),
        await create_task(
            api,
            "demo.sleep",
            name="nightly backup",
            params={"seconds": 60},
            trigger="scheduled",
            run_at=(datetime.now(UTC) + timedelta(hours=3)).isoformat(),
        ),
    ]
    await open_dashboard(ui)
    await ui.page.wait_for_selector(f"ts-task-card[data-task-id='{made[3]['id']}'][data-state=serving]")
    await wait_js(
        ui,
        "ids => ids.every(id =>"
        " document.querySelector(`ts-task-card[data-task-id='${id}'] progress`)?.value >= 12)",
        [made[0]["id"], made[1]["id"]],
        timeout=20_000,
    )
    await ui.page.evaluate("document.querySelectorAll('.toast').forEach(t => t.remove())")
    await shot(ui, output_dir, "dashboard")
    if os.environ.get("TASKSTATE_UPDATE_SCREENSHOT") == "1":
        await ui.page.screenshot(path=REPO / "docs" / "dashboard.png", full_page=True)
    for task in made:
        await api.post(f"/api/v2/tasks/{task['id']}/cancel")
    assert page_errors(ui) == []


async def test_start_from_form_progress_moves_and_reload_restores_it(
    ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path
) -> None:
    await open_dashboard(ui)
    page = ui.page
    # The form is generated from demo.sleep's params_schema.
    await page.select_option("#start-type", "demo.sleep")
    await page.fill("#start-name", "watch the bar")
    await page.get_by_label("Seconds").fill("4")
    await page.get_by_label("Steps").fill("8")
    await page.get_by_role("button", name="Start task").click()

    name = page.locator("ts-task-card .task-name", has_text="watch the bar")
    await name.wait_for()
    task_id = await name.evaluate("a => a.closest('ts-task-card').dataset.taskId")
    await wait_js(
        ui, "id => document.querySelector(`ts-task-card[data-task-id='${id}'] progress`).value > 0", task_id
    )
    first = await progress_of(ui, task_id)
    await wait_js(
        ui,
        "([id, v]) => document.querySelector(`ts-task-card[data-task-id='${id}'] progress`).value > v",
        [task_id, first],
    )
    assert await card(ui, task_id).get_attribute("data-state") == "running"
    phase = await card(ui, task_id).locator(".phase-line").text_content()
    assert phase is not None and "sleeping" in phase and "step" in phase
    await shot(ui, output_dir, "dashboard-running")

    # Reload mid-run: the same task comes back from the server, with its progress.
    before = (await api.get(f"/api/v2/tasks/{task_id}")).json()
    assert before["state"] == "running", before
    await page.reload()
    await page.wait_for_selector("html[data-dashboard-restored]")
    await card(ui, task_id).wait_for()
    assert await progress_of(ui, task_id) >= before["progress"]
    assert await card(ui, task_id).locator(".task-name").text_content() == "watch the bar"

    # It ends: the card says so, then the history shows it.
    await page.wait_for_selector(
        f"ts-recent-tasks tr[data-task-id='{task_id}'][data-state=completed]", timeout=15_000
    )
    assert page_errors(ui) == []


async def test_page_opened_after_the_task_ended_shows_completed_not_running(
    browser: Any, server: ServerProcess, api: httpx.AsyncClient, output_dir: Path
) -> None:
    task = await create_task(
        api, "demo.sleep", name="finishes while nobody looks", params={"seconds": 4, "steps": 4}
    )
    first = await open_page(browser, server.url)
    try:
        await open_dashboard(first)
        await first.page.wait_for_selector(f"ts-task-card[data-task-id='{task['id']}'][data-state=running]")
    finally:
        await first.context.close()  # the user closes the tab

    await wait_for_task(api, task["id"], "completed", within=20)

    again = await open_page(browser, server.url)
    try:
        await open_dashboard(again)
        assert await card(again, task["id"]).count() == 0, "an ended task is not shown as active"
        row = again.page.locator(f"ts-recent-tasks tr[data-task-id='{task['id']}']")
        await row.wait_for()
        assert await row.get_attribute("data-state") == "completed"
        assert (await row.locator(".badge").text_content()) == "completed"

        await again.page.goto(again.url(f"#/tasks/{task['id']}"))
        task_page = again.page.locator("ts-task-page[data-state=completed]")
        await task_page.wait_for()
        assert await task_page.locator(".task-head .badge").text_content() == "completed"
        await again.page.wait_for_selector("ts-task-timeline li[data-state=completed]")
        states = await again.page.locator("ts-task-timeline li").evaluate_all(
            "els => els.map(e => e.dataset.state)"
        )
        assert states == ["queued", "preparing", "running", "collecting", "completed"]
        await again.page.wait_for_selector("ts-task-log li[data-seq='3']")
        assert await again.page.locator("ts-task-page .actions button").count() == 0
        await shot(again, output_dir, "task-completed")
        assert page_errors(again) == []
    finally:
        await again.context.close()


async def test_server_killed_and_restarted_the_page_catches_up(
    ui: BrowserPage, server: ServerProcess, api: httpx.AsyncClient, output_dir: Path
) -> None:
    await open_dashboard(ui)
    survivor = await create_task(
        api, "demo.sleep", name="survives a crash", params={"seconds": 2, "steps": 4}
    )
    await wait_js(
        ui,
        "id => document.querySelector(`ts-task-card[data-task-id='${id}'] progress`)?.value > 0",
        survivor["id"],
    )

    await server.kill()
    await ui.page.wait_for_selector(
        "ts-connection-indicator:is([data-state=reconnecting], [data-state=polling])"
    )
    label = await ui.page.locator("ts-connection-indicator").text_content()
    assert label is not None and ("Reconnecting" in label or "Polling" in label)
    await shot(ui, output_dir, "dashboard-reconnecting")

    await server.start()
    # Made while the page was still disconnected: it must show up through the catch-up.
    later = await create_task(api, "demo.noop", name="made after the restart")
    await ui.page.wait_for_selector("ts-connection-indicator[data-state=live]", timeout=20_000)
    await ui.page.wait_for_selector(
        f"ts-recent-tasks tr[data-task-id='{later['id']}'][data-state=completed]", timeout=20_000
    )
    # The task that was running when the server died is restored by the new instance and ends.
    await wait_for_task(api, survivor["id"], "completed", "failed", within=30)
    final = (await api.get(f"/api/v2/tasks/{survivor['id']}")).json()
    await ui.page.wait_for_selector(
        f"ts-recent-tasks tr[data-task-id='{survivor['id']}'][data-state={final['state']}]", timeout=15_000
    )
    assert await card(ui, survivor["id"]).evaluate_all(
        "cards => cards.every(c => ['completed', 'failed'].includes(c.dataset.state))"
    )
    # The page's last seq is the server's: nothing was missed.
    async with websockets.connect(server.url.replace("http", "ws") + "/api/v2/events") as socket:
        snapshot = json.loads(await asyncio.wait_for(socket.recv(), 10))
    await wait_js(ui, "seq => window.taskStateManager.lastSeq >= seq", snapshot["seq"])
    assert page_errors(ui) == []


async def test_cancel_and_retry_from_the_task_page(
    ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path
) -> None:
    task = await create_task(api, "demo.sleep", name="to be cancelled", params={"seconds": 60, "steps": 60})
    page = ui.page
    await page.goto(ui.url(f"#/tasks/{task['id']}"))
    await page.wait_for_selector("ts-task-page[data-state=running]")
    assert await page.get_by_role("button", name="Retry").count() == 0
    assert await page.get_by_role("button", name="Stop service").count() == 0
    await shot(ui, output_dir, "task-running")

    await page.get_by_role("button", name="Cancel task").click()
    await page.wait_for_selector("ts-task-page[data-state=cancelled]")
    assert (await wait_for_task(api, task["id"], "cancelled", within=20))["state"] == "cancelled"
    assert await page.get_by_role("button", name="Cancel task").count() == 0
    status = await page.locator(".state-line").text_content()
    assert status is not None and "cancelled" in status

    await page.get_by_role("button", name="Retry").click()
    await page.wait_for_function(
        "id => location.hash.startsWith('#/tasks/') && !location.hash.includes(id)", arg=task["id"]
    )
    retry_id = page.url.rsplit("/", 1)[-1]
    await page.wait_for_selector(f"ts-task-page[task-id='{retry_id}'] .card-meta a")
    retry = (await api.get(f"/api/v2/tasks/{retry_id}")).json()
    assert retry["retry_of"] == task["id"]
    await api.post(f"/api/v2/tasks/{retry_id}/cancel")
    await page.wait_for_selector("ts-task-page[data-state=cancelled]")
    assert page_errors(ui) == []


async def test_stop_a_service_from_the_task_page(ui: BrowserPage, api: httpx.AsyncClient) -> None:
    service = await create_task(api, "demo.serve", name="model server")
    page = ui.page
    await page.goto(ui.url(f"#/tasks/{service['id']}"))
    await page.wait_for_selector("ts-task-page[data-state=serving]")
    assert await page.locator("ts-task-report").get_by_text("demo://serve").count() == 1
    assert await page.get_by_role("button", name="Retry").count() == 0
    await page.get_by_role("button", name="Stop service").click()
    await page.wait_for_selector("ts-task-page[data-state=completed]")
    await page.wait_for_selector("ts-task-timeline li[data-state=stopping]")
    assert await page.locator("ts-task-page .actions button").count() == 0
    assert page_errors(ui) == []


async def test_answer_a_question_from_the_ui(
    ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path
) -> None:
    question = "Ship <b>v2</b> to production?"
    task = await create_task(
        api, "demo.ask", name="deploy approval", params={"question": question, "choices": ["ship it", "hold"]}
    )
    page = ui.page
    await open_dashboard(ui)
    await page.wait_for_selector(f"ts-task-card[data-task-id='{task['id']}'] .question-flag:not([hidden])")
    await page.goto(ui.url(f"#/tasks/{task['id']}"))
    asked = page.locator("ts-task-questions .question-text")
    await asked.wait_for()
    assert await asked.text_content() == question
    await shot(ui, output_dir, "task-question")

    await page.get_by_role("button", name="ship it").click()
    await page.wait_for_selector("ts-task-page[data-state=completed]")
    assert await page.locator(".questions-panel").is_hidden()
    assert json.loads(await page.locator("ts-task-report pre.result").text_content() or "null") == {
        "answer": "ship it"
    }
    assert (await api.get(f"/api/v2/tasks/{task['id']}")).json()["result"] == {"answer": "ship it"}
    assert page_errors(ui) == []


async def test_hostile_text_is_rendered_as_text(
    ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path
) -> None:
    running = await create_task(api, "demo.sleep", name=XSS_NAME, params={"seconds": 60, "steps": 60})
    failing = await create_task(
        api, "demo.fail", name="<script>alert(3)</script>", params={"message": "<img src=y onerror=alert(2)>"}
    )
    await wait_for_task(api, failing["id"], "failed", within=20)
    page = ui.page
    await open_dashboard(ui)
    name = card(ui, running["id"]).locator(".task-name")
    assert await name.text_content() == XSS_NAME
    assert await page.locator("main img, main script").count() == 0

    await page.goto(ui.url(f"#/tasks/{running['id']}"))
    await page.wait_for_selector("ts-task-page[data-state=running]")
    assert await page.locator("h1.task-title").text_content() == XSS_NAME
    await page.goto(ui.url(f"#/tasks/{failing['id']}"))
    await page.wait_for_selector("ts-task-page[data-state=failed]")
    assert await page.locator("pre.error-text").text_content() == "<img src=y onerror=alert(2)>"
    await page.goto(ui.url("#/history?q=onerror"))
    await page.wait_for_selector(f"ts-task-table tr[data-task-id='{running['id']}']")
    assert await page.locator("main img, main script").count() == 0
    assert ui.dialogs == []
    await api.post(f"/api/v2/tasks/{running['id']}/cancel")
    assert page_errors(ui) == []


async def test_history_filters_and_pagination(
    ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path
) -> None:
    marker = uuid.uuid4().hex[:6]
    response = await api.post(
        "/api/v2/tasks/batch",
        json={
            "tasks": [{"type": "demo.noop", "name": f"page {marker} {i:02d}"} for i in range(30)]
            + [{"type": "demo.fail", "name": f"page {marker} bad", "trigger": "scheduled"}]
        },
    )
    assert response.status_code == 201, response.text
    for item in response.json()["items"]:
        await wait_for_task(api, item["id"], "completed", "failed", within=20)
    page = ui.page
    await page.goto(ui.url("#/history"))
    await page.get_by_label("Name").fill(f"page {marker}")
    await page.get_by_role("button", name="Apply filters").click()
    summary = page.locator("ts-history-page .summary")
    await summary.filter(has_text="of 31 tasks").wait_for()
    assert f"1{DASH}25" in (await summary.text_content() or "")
    assert await page.locator("ts-task-table tbody tr").count() == 25
    await shot(ui, output_dir, "history")

    await page.get_by_role("button", name="Older →").click()
    await summary.filter(has_text=f"26{DASH}31 of 31").wait_for()
    assert await page.get_by_role("button", name="Older →").is_disabled()
    await page.get_by_role("button", name="← Newer").click()
    await summary.filter(has_text=f"1{DASH}25 of 31").wait_for()

    await page.select_option("#f-state", "failed")
    await page.get_by_role("button", name="Apply filters").click()
    await summary.filter(has_text="of 1 tasks").wait_for()
    assert "state=failed" in page.url
    await page.select_option("#f-state", "")
    await page.select_option("#f-trigger", "scheduled")
    await page.get_by_role("button", name="Apply filters").click()
    await page.wait_for_function("() => location.hash.includes('trigger=scheduled')")
    await summary.filter(has_text="of 1 tasks").wait_for()
    assert await page.locator("ts-task-table tbody tr .task-name").text_content() == f"page {marker} bad"
    today = datetime.now().strftime("%Y-%m-%d")
    await page.fill("#f-from", today)
    await page.fill("#f-to", today)
    await page.select_option("#f-trigger", "")
    await page.get_by_role("button", name="Apply filters").click()
    await summary.filter(has_text="of 31 tasks").wait_for()
    assert page_errors(ui) == []


async def test_workers_page(ui: BrowserPage, server: ServerProcess, output_dir: Path) -> None:
    await ui.page.goto(ui.url("#/workers"))
    row = ui.page.locator("ts-workers-page tr[data-state=running]")
    await row.first.wait_for()
    assert str(server.process.pid if server.process else "") in (await row.first.text_content() or "")
    await shot(ui, output_dir, "workers")
    assert page_errors(ui) == []


async def test_phone_width(
    browser: Any, server: ServerProcess, api: httpx.AsyncClient, output_dir: Path
) -> None:
    task = await create_task(
        api, "demo.sleep", name="a long task name that has to wrap on a phone", params={"seconds": 60}
    )
    phone = await open_page(browser, server.url, viewport={"width": 390, "height": 844})
    try:
        await open_dashboard(phone)
        await card(phone, task["id"]).wait_for()
        await shot(phone, output_dir, "phone-dashboard")
        assert await phone.page.evaluate("document.documentElement.scrollWidth") <= 390
        await phone.page.goto(phone.url(f"#/tasks/{task['id']}"))
        await phone.page.wait_for_selector("ts-task-page[data-state=running]")
        assert await phone.page.evaluate("document.documentElement.scrollWidth") <= 390
        await phone.page.goto(phone.url("#/history"))
        await phone.page.wait_for_selector("ts-task-table tbody tr[data-task-id]")
        assert await phone.page.evaluate("document.documentElement.scrollWidth") <= 390
        await shot(phone, output_dir, "phone-history")
        # Keyboard: the cancel button is reachable by Tab and works with Enter.
        await phone.page.goto(phone.url(f"#/tasks/{task['id']}"))
        await phone.page.wait_for_selector("ts-task-page[data-state=running]")
        for _ in range(40):
            await phone.page.keyboard.press("Tab")
            focused = await phone.page.evaluate("document.activeElement?.textContent")
            if focused == "Cancel task":
                break
        else:
            pytest.fail("the Cancel button cannot be reached with Tab")
        await phone.page.keyboard.press("Enter")
        await phone.page.wait_for_selector("ts-task-page[data-state=cancelled]")
        assert page_errors(phone) == []
    finally:
        await phone.context.close()


async def test_emergency_reset_is_behind_a_confirmation(
    ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path
) -> None:
    made = [await create_task(api, "demo.sleep", name=f"stuck {i}", params={"seconds": 60}) for i in range(2)]
    made.append(await create_task(api, "demo.serve", name="stuck service"))
    await open_dashboard(ui)
    await card(ui, made[2]["id"]).wait_for()
    await ui.page.get_by_role("button", name="Emergency reset").click()
    dialog = ui.page.get_by_role("dialog", name="Emergency reset?")
    await dialog.wait_for()
    await shot(ui, output_dir, "reset-confirmation", full_page=False)
    # Keeping everything running changes nothing.
    await dialog.get_by_role("button", name="Keep everything running").click()
    await dialog.wait_for(state="hidden")
    assert (await api.get(f"/api/v2/tasks/{made[0]['id']}")).json()["state"] in (
        "queued",
        "preparing",
        "running",
    )
    await ui.page.get_by_role("button", name="Emergency reset").click()
    await dialog.get_by_role("button", name="Cancel every task").click()
    await dialog.wait_for(state="hidden")
    for task in made:
        assert (await wait_for_task(api, task["id"], "cancelled", "failed", within=20))["is_terminal"]
    await ui.page.wait_for_function(
        "() => document.querySelector('ts-active-tasks .count').textContent === '(0)'"
    )
    assert (await api.get("/api/v2/tasks/active")).json()["items"] == []
    assert page_errors(ui) == []
