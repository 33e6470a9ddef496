"""Browser fixtures: Debian's chromium driven by Python playwright, against `taskstate serve`
run as a subprocess (so that a test can kill and restart it).

Never a downloaded browser: chromium comes from apt (`/usr/bin/chromium`, or
TASKSTATE_CHROMIUM), and the tests are skipped, saying why, when it or playwright is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from tests.support.browser import OUTPUT, BrowserPage, launched_chromium, missing_browser, open_page
from tests.support.processes import ServerProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; kept here so that `--strict-markers` passes without it.
    config.addinivalue_line("markers", "e2e: end-to-end tests in a real browser (chromium + playwright)")


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    async with launched_chromium() as browser:
        yield browser


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """One `taskstate serve` on SQLite for the module; tests may kill and restart it."""
    if missing_browser():
        pytest.skip(missing_browser() or "")
    workdir = tmp_path_factory.mktemp("ui-server")
    process = ServerProcess(f"sqlite+aiosqlite:///{workdir / 'taskstate.db'}", workdir)
    await process.start()
    try:
        yield process
    finally:
        process.stop_quietly()


@pytest_asyncio.fixture(loop_scope="module")
async def ui(browser: Browser, server: ServerProcess) -> AsyncIterator[BrowserPage]:
    opened = await open_page(browser, server.url)
    try:
        yield opened
    finally:
        await opened.context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
        yield client
