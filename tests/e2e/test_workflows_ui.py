"""Workflows (CONTRACT §6) in the web UI, in a real chromium against a real `taskstate serve`:
a fan-out's tree on its task page, a plan's approval gate approved from the questions inbox
(and its steps then running in order), the dashboard's grouping of children under their
parent, and the schedules page.

Screenshots go where the other browser tests put theirs (TASKSTATE_TEST_OUTPUT).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import create_task as create
from tests.support.browser import BrowserPage, open_dashboard, page_errors, shot
from tests.support.waits import wait_for_task

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

HOSTILE = "<img src=x onerror=alert(1)>"


async def history_until(
    api: httpx.AsyncClient, params: dict[str, str], enough: Any = bool
) -> list[dict[str, Any]]:
    """The history with `params` once `enough(items)` (a job spawns children, a schedule fires)."""
    for _ in range(400):
        items: list[dict[str, Any]] = (await api.get("/api/v2/tasks", params=params)).json()["items"]
        if enough(items):
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"the history never had what was waited for: {params}")


async def tree_of(api: httpx.AsyncClient, root_id: str, count: int) -> list[dict[str, Any]]:
    return await history_until(api, {"root_id": root_id}, lambda items: len(items) >= count)


async def test_a_fanout_tree_on_its_task_page(ui: BrowserPage, api: httpx.AsyncClient) -> None:
    fanout = await create(api, "demo.fanout", name=HOSTILE, params={"children": 3, "seconds": 4})
    spawned = [t["id"] for t in await tree_of(api, fanout["id"], 4) if t["id"] != fanout["id"]]
    page = ui.page
    await page.goto(ui.url(f"#/tasks/{fanout['id']}"))
    tree = page.locator("ts-task-workflow ts-task-tree")
    # The children appear under the root, nested, as the job spawns them...
    children = tree.locator(f"li[data-task-id='{fanout['id']}'] > ul > li")
    await children.nth(2).wait_for()
    assert await children.locator(".tree-name").all_text_contents() == ["child 1", "child 2", "child 3"]
    assert await tree.locator(".tree-name[aria-current=page]").text_content() == HOSTILE  # as text
    waiting = page.locator("ts-task-workflow .waiting-line")
    await waiting.wait_for()
    assert "Waiting for 3 children" in (await waiting.text_content() or "")
    # ... and end completed, live, as does the root.
    await page.wait_for_selector(
        f"ts-task-page[data-state=completed][task-id='{fanout['id']}']", timeout=30_000
    )
    for child_id in spawned:
        await tree.locator(f"li[data-task-id='{child_id}'][data-state=completed]").wait_for()
    assert await tree.locator("li[data-state=completed]").count() == 4
    assert await page.locator("ts-task-workflow .waiting-line").count() == 0
    assert await page.locator("section[aria-labelledby=graph-h]").is_hidden()  # no dependencies here
    # A child's page shows the same tree, and where it was spawned.
    await children.nth(1).locator(".tree-name").click()
    await page.wait_for_selector("ts-task-workflow .place-line")
    assert await page.locator("ts-task-tree .tree-name[aria-current=page]").text_content() == "child 2"
    assert ui.dialogs == [] and page_errors(ui) == []


async def test_approve_a_plan_from_the_questions_inbox(
    ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path
) -> None:
    plan = await create(api, "demo.plan", name="release v2", params={"seconds": 0.6})
    items = await tree_of(api, plan["id"], 4)
    steps = {t["name"]: t for t in items if t["id"] != plan["id"]}
    page = ui.page

    # The plan's page: its tree, its dependency graph, and what its first step waits for.
    await page.goto(ui.url(f"#/tasks/{plan['id']}"))
    graph = page.locator("ts-dependency-graph svg")
    await graph.wait_for()
    nodes = graph.locator("a.graph-node")
    assert await nodes.count() == 3
    labels = [await nodes.nth(i).get_attribute("aria-label") for i in range(3)]
    assert sorted(labels) == sorted(
        [
            "1. gather, queued",
            "2. build, queued; depends on 1. gather",
            "3. ship, queued; depends on 2. build",
        ]
    )
    assert await graph.locator("path.graph-edge").count() == 2
    assert await page.locator("ts-dependency-graph .graph-list li").count() == 3  # the same graph as text
    await page.wait_for_selector(".tree-note:text('waits for approval')")
    await shot(ui, output_dir, "workflow-task-tree-and-graph")

    await page.goto(ui.url(f"#/tasks/{steps['1. gather']['id']}"))
    blocked = page.locator("ts-task-workflow .blocked-line")
    await blocked.wait_for()
    assert "waits for approval" in (await blocked.text_content() or "")
    await page.goto(ui.url(f"#/tasks/{steps['2. build']['id']}"))
    await page.locator(
        "ts-task-workflow .blocked-line", has_text="waits for 1. gather (queued) to complete"
    ).wait_for()

    # The inbox: the gate, with Approve and Reject; another task's question, with its choices.
    ask = await create(
        api, "demo.ask", name="notes", params={"question": "Publish the notes?", "choices": ["yes", "no"]}
    )
    await page.get_by_role("link", name="Questions").click()
    other = page.locator(
        "ts-questions-page article.question:not(.question-gate)", has_text="Publish the notes?"
    )
    await other.wait_for()
    assert await other.get_by_role("button").all_text_contents() == ["yes", "no"]
    gate = page.locator("ts-questions-page article.question-gate", has_text="1. gather")
    await gate.wait_for()
    assert await gate.get_by_role("button").all_text_contents() == ["Approve", "Reject"]
    await shot(ui, output_dir, "workflow-questions")
    await gate.get_by_role("button", name="Approve").click()
    await gate.wait_for(state="detached")  # gone from the inbox, live

    # The three steps then run, one after the other.
    await wait_for_task(api, plan["id"], "completed", within=30)
    done = {name: (await api.get(f"/api/v2/tasks/{t['id']}")).json() for name, t in steps.items()}
    assert all(t["state"] == "completed" for t in done.values())
    assert done["1. gather"]["finished_at"] <= done["2. build"]["started_at"]
    assert done["2. build"]["finished_at"] <= done["3. ship"]["started_at"]
    assert (await api.get(f"/api/v2/tasks/{plan['id']}")).json()["result"] == {"approved": True, "steps": 3}
    await other.get_by_role("button", name="yes").click()
    await page.locator("ts-questions-page[data-count='0']").wait_for()
    assert (await wait_for_task(api, ask["id"], "completed"))["result"] == {"answer": "yes"}
    assert ui.dialogs == [] and page_errors(ui) == []


async def test_the_dashboard_groups_children_under_their_parent(
    ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path
) -> None:
    fanout = await create(api, "demo.fanout", name="nightly fan-out", params={"children": 4, "seconds": 30})
    lone = await create(api, "demo.sleep", name="a lone task", params={"seconds": 30})
    children = [t for t in await tree_of(api, fanout["id"], 5) if t["id"] != fanout["id"]]
    page = ui.page
    await open_dashboard(ui)
    group = page.locator(f"ts-task-group[root-id='{fanout['id']}']")
    await group.locator(f"ts-task-card[data-task-id='{fanout['id']}']").wait_for()
    await page.locator(f"ts-task-card[data-task-id='{lone['id']}']").wait_for()
    # One entry for the workflow: no card of its own for any child.
    for child in children:
        assert await page.locator(f"ts-task-card[data-task-id='{child['id']}']").count() == 0
    await page.locator(f"ts-task-group[root-id='{fanout['id']}'][data-children='4']").wait_for()
    await group.locator(".group-counts", has_text="4 running").wait_for()
    await group.get_by_role("button", name="Show the 4 child tasks of nightly fan-out").wait_for()
    toggle = group.locator("button.group-toggle")
    assert await toggle.get_attribute("aria-expanded") == "false"
    assert await group.locator("ts-task-tree").is_hidden()
    await toggle.click()
    assert await toggle.get_attribute("aria-expanded") == "true"
    assert await toggle.get_attribute("aria-label") == "Hide the 4 child tasks of nightly fan-out"
    rows = group.locator("ts-task-tree li")
    await rows.nth(3).wait_for()
    assert await rows.locator(".tree-name").all_text_contents() == [
        "child 1",
        "child 2",
        "child 3",
        "child 4",
    ]
    await page.locator("#active-heading .count", has_text="(6)").wait_for()  # 1 + 4 children + the lone task
    await shot(ui, output_dir, "workflow-dashboard-group")
    # Cancelling the parent cancels its children: the counts follow, live.
    await api.post(f"/api/v2/tasks/{fanout['id']}/cancel")
    await group.locator(".group-counts", has_text="4 cancelled").wait_for()
    await api.post(f"/api/v2/tasks/{lone['id']}/cancel")
    assert ui.dialogs == [] and page_errors(ui) == []


async def test_the_schedules_page(ui: BrowserPage, api: httpx.AsyncClient, output_dir: Path) -> None:
    fired = (
        await api.post(
            "/api/v2/schedules",
            json={"type": "demo.noop", "name": "every second", "interval_seconds": 1, "overlap": "skip"},
        )
    ).json()
    # Its first firing, then paused: the page shows a last run without a toast a second.
    await history_until(api, {"trigger_source": f"schedule:{fired['id']}"})
    fired = (await api.post(f"/api/v2/schedules/{fired['id']}/pause")).json()
    page = ui.page
    await page.goto(ui.url("#/schedules"))
    form = page.locator("ts-schedule-form")
    await form.locator("#schedule-type option[value='demo.sleep']").wait_for(state="attached")
    await form.locator("#schedule-type").select_option("demo.sleep")
    await form.get_by_label("Name").fill(f"nightly backup {HOSTILE}")
    await form.get_by_label("Seconds").fill("2")
    await form.get_by_label("On a cron schedule").check()
    await form.get_by_label("Cron expression").fill("0 3 * * *")
    await form.get_by_label("Timezone").fill("Europe/Riga")
    await form.get_by_label("When the previous task still runs").select_option("queue")
    await form.get_by_role("button", name="Create schedule").click()
    row = page.locator("ts-schedules-page tbody tr", has_text="nightly backup")
    await row.wait_for()
    assert HOSTILE in (await row.locator("th").text_content() or "")
    assert "cron 0 3 * * * (Europe/Riga)" in (await row.text_content() or "")
    made = next(
        s for s in (await api.get("/api/v2/schedules")).json()["items"] if s["name"].startswith("nightly")
    )
    assert (made["cron"], made["timezone"], made["overlap"], made["params"]["seconds"]) == (
        "0 3 * * *",
        "Europe/Riga",
        "queue",
        2,
    )

    # The schedule that fires every second: its last run links to the task it made.
    last_run = page.locator(f"tr[data-schedule-id='{fired['id']}'] a[href^='#/tasks/']")
    await last_run.wait_for(timeout=20_000)
    await row.get_by_role("button", name="Pause nightly backup").click()
    await page.locator(f"tr[data-schedule-id='{made['id']}'][data-paused=true]").wait_for()
    assert await last_run.get_attribute("href") == f"#/tasks/{fired['last_task_id']}"
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(ui, output_dir, "workflow-schedules")
    await row.get_by_role("button", name="Resume nightly backup").click()
    await page.locator(f"tr[data-schedule-id='{made['id']}'][data-paused=false]").wait_for()
    await row.get_by_role("button", name="Delete nightly backup").click()
    await row.get_by_role("button", name="Really delete? nightly backup").click()
    await row.wait_for(state="detached")
    assert all(s["id"] != made["id"] for s in (await api.get("/api/v2/schedules")).json()["items"])
    await api.delete(f"/api/v2/schedules/{fired['id']}")
    assert ui.dialogs == [] and page_errors(ui) == []
