"""The UI of taskstate embedded in a user's FastAPI app (README's myapp.py), under `/jobs/`,
in a real headless chromium: it finds its API and its event stream under the prefix, shows
the user's job live and sees it finish."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from tests.support.api import create_task
from tests.support.browser import POLL_MS, card, missing_browser, open_page, page_errors, shot
from tests.support.embedded import imported_readme_app
from tests.support.servers import serving

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module")
async def embedded_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """README's application on a real uvicorn: its base URL (taskstate is under `/jobs`)."""
    if missing_browser():
        pytest.skip(missing_browser() or "")
    with imported_readme_app(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}", monkeypatch) as myapp:
        async with serving(myapp.app) as base_url:
            yield base_url


async def test_the_ui_under_a_prefix_follows_a_task_to_its_end(
    browser: Browser, embedded_url: str, output_dir: Path
) -> None:
    opened = await open_page(browser, f"{embedded_url}/jobs")
    requests: list[str] = []
    opened.page.on("request", lambda request: requests.append(request.url))
    try:
        await opened.page.goto(f"{embedded_url}/jobs/?poll={POLL_MS}#/")
        await opened.page.wait_for_selector("html[data-dashboard-restored]")
        await opened.page.wait_for_selector("ts-connection-indicator[data-state=live]")

        task = await create_task(
            f"{embedded_url}/jobs", "report", name="acme report", params={"customer": "acme", "pages": 20}
        )
        await card(opened, task["id"]).wait_for()
        await opened.page.wait_for_selector(f"ts-task-card[data-task-id='{task['id']}'][data-state=running]")
        await shot(opened, output_dir, "embedded-running")
        await opened.page.wait_for_selector(
            f"ts-recent-tasks tr[data-task-id='{task['id']}'][data-state=completed]", timeout=20_000
        )
        await shot(opened, output_dir, "embedded-completed")

        # Every request the page made went to the prefix: none to the user's own root.
        api = [url for url in requests if "/api/" in url]
        assert api and all(url.startswith(f"{embedded_url}/jobs/api/v2/") for url in api), api
        assert page_errors(opened) == []
    finally:
        await opened.context.close()
