"""Browser fixtures: Debian's chromium driven by Python playwright, against `taskstate serve`
run as a subprocess (so that a test can kill and restart it).

Never a downloaded browser: chromium comes from apt (`/usr/bin/chromium`, or
TASKSTATE_CHROMIUM), and the tests are skipped, saying why, when it or playwright is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from tests.processes import REPO, ServerProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

CHROMIUM = os.environ.get("TASKSTATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots and timings of the browser tests.
OUTPUT = Path(os.environ.get("TASKSTATE_TEST_OUTPUT", REPO / "test-output")) / "e2e"
#: How often the page polls while its socket is down, in the tests (the default is 3000 ms).
POLL_MS = 1000


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; kept here so that `--strict-markers` passes without it.
    config.addinivalue_line("markers", "e2e: end-to-end tests in a real browser (chromium + playwright)")


def missing_browser() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Python playwright is not installed (pip install playwright; never `playwright install`)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


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


@dataclass
class BrowserPage:
    """A page in a fresh browser context, with what it logged and any dialog it tried to open."""

    context: BrowserContext
    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def url(self, route: str = "#/") -> str:
        return f"{self.base_url}/?poll={POLL_MS}{route}"


async def open_page(browser: Browser, base_url: str, **context_args: Any) -> BrowserPage:
    context = await browser.new_context(viewport=context_args.pop("viewport", {"width": 1280, "height": 900}))
    context.set_default_timeout(15_000)
    # index.html carries a strict Content-Security-Policy; any violation fails the test.
    await context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "`CSP violation: ${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`))"
    )
    page = await context.new_page()
    opened = BrowserPage(context, page, base_url)

    async def on_dialog(dialog: Any) -> None:
        opened.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: opened.errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            opened.errors.append(f"console.error: {message.text}") if message.type == "error" else None
        ),
    )
    return opened


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
