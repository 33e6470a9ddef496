"""The insights page (#/insights) in a real chromium, after tasks of several types ran
(completed, failed, cancelled): four uPlot charts drawn (canvases with pixels on them,
legend labels), the totals and the by-type table equal to what the API answers, a type
filter that goes into the address, and no CSP violation from the vendored chart library."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import create_task
from tests.support.browser import BrowserPage, page_errors
from tests.support.waits import wait_for_task

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SCREENS = Path("/work/notes/screens")
CHARTS = ("throughput", "outcomes", "durations", "queue")
#: Whether a chart's canvas has anything drawn on it (some pixel not transparent).
DRAWN = """(key) => {
  const canvas = document.querySelector(`ts-insights-page [data-chart="${key}"] canvas`);
  if (!canvas || canvas.width === 0) return false;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
  return false;
}"""


async def run_tasks(api: httpx.AsyncClient) -> None:
    created = [
        *[create_task(api, "demo.sleep", params={"seconds": 0.1 * (i + 1), "steps": 1}) for i in range(4)],
        *[create_task(api, "demo.fail", params={"message": f"no {i}"}, max_attempts=1) for i in range(3)],
        *[
            create_task(api, "demo.sleep", params={"seconds": 60, "steps": 60}, name="cancel me")
            for _ in range(2)
        ],
    ]
    tasks = await asyncio.gather(*created)
    for task in tasks[-2:]:
        await wait_for_task(api, task["id"], "running")
        assert (await api.post(f"/api/v2/tasks/{task['id']}/cancel")).status_code == 200
    await asyncio.gather(*(wait_for_task(api, t["id"], "completed", "failed", "cancelled") for t in tasks))


async def test_insights_page_draws_the_charts_of_what_ran(ui: BrowserPage, api: httpx.AsyncClient) -> None:
    await run_tasks(api)
    expected: dict[str, Any] = (await api.get("/api/v2/insights")).json()
    by_type = {row["type"]: row for row in expected["by_type"]}
    assert by_type["demo.fail"]["failed"] >= 3 and by_type["demo.sleep"]["cancelled"] >= 2

    page = ui.page
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto(ui.url("#/insights"))
    assert await page.locator('nav a[href="#/insights"]').get_attribute("aria-current") == "page"
    for key in CHARTS:
        await page.wait_for_function(DRAWN, arg=key, timeout=15_000)
    labels = await page.locator("ts-insights-page .u-legend .u-label").all_text_contents()
    for label in ("completed", "failed", "cancelled", "p50", "p95", "p99", "queue depth", "mean wait"):
        assert label in labels, (label, labels)

    # The numbers are the API's.
    totals = {o: sum(r[o] for r in expected["by_type"]) for o in ("completed", "failed", "cancelled")}
    for outcome, value in totals.items():
        assert await page.locator(f'[data-total="{outcome}"]').text_content() == str(value)
    assert await page.locator('[data-total="finished"]').text_content() == str(sum(totals.values()))
    for type_name, row in by_type.items():
        cells = page.locator(f'ts-insights-page tr[data-type="{type_name}"]')
        for outcome in ("completed", "failed", "cancelled"):
            assert await cells.locator(f'[data-cell="{outcome}"]').text_content() == str(row[outcome])

    await asyncio.to_thread(SCREENS.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=SCREENS / "insights.png", full_page=True)

    # A type filter goes into the address and narrows every number.
    await page.locator("ts-insights-page select[name=type]").select_option("demo.fail")
    await page.wait_for_function("() => location.hash === '#/insights?type=demo.fail'")
    await page.locator('[data-total="completed"]').filter(has_text="0").wait_for()
    assert await page.locator('[data-total="failed"]').text_content() == str(by_type["demo.fail"]["failed"])
    assert await page.locator("ts-insights-page .insights-table tbody tr").count() == 1
    for key in CHARTS:
        await page.wait_for_function(DRAWN, arg=key, timeout=15_000)

    # At a phone's width the charts follow the page: nothing scrolls sideways.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.wait_for_function(
        "() => [...document.querySelectorAll('ts-insights-page .uplot')]"
        ".every((c) => c.getBoundingClientRect().right <= 390)"
    )
    wide = await page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 391)"
        ".slice(0, 8).map((e) => `${e.tagName} ${Math.round(e.getBoundingClientRect().right)}`)"
    )
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 390, wide
    await page.screenshot(path=SCREENS / "insights-phone.png", full_page=True)
    assert page_errors(ui) == []
