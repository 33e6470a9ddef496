"""Debian's chromium driven by Python playwright, for the end-to-end tests.

Never a downloaded browser: chromium comes from apt (`/usr/bin/chromium`, or
TASKSTATE_CHROMIUM); `missing_browser` says why the tests must be skipped without it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.processes import REPO

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


def missing_browser() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Python playwright is not installed (pip install playwright; never `playwright install`)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@asynccontextmanager
async def launched_chromium(*extra_args: str) -> AsyncIterator[Browser]:
    """Chromium, headless, with the tests' arguments and `extra_args`; closed afterwards."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            await browser.close()


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


async def shot(ui: BrowserPage, output_dir: Path, name: str, full_page: bool = True) -> None:
    await ui.page.screenshot(path=output_dir / f"{name}.png", full_page=full_page)


async def open_dashboard(ui: BrowserPage) -> None:
    await ui.page.goto(ui.url("#/"))
    await ui.page.wait_for_selector("html[data-dashboard-restored]")
    await ui.page.wait_for_selector("ts-connection-indicator[data-state=live]")


def card(ui: BrowserPage, task_id: str) -> Any:
    return ui.page.locator(f"ts-task-card[data-task-id='{task_id}']")


async def progress_of(ui: BrowserPage, task_id: str) -> float:
    value: float = await card(ui, task_id).locator("progress").evaluate("p => p.value")
    return value


async def wait_js(ui: BrowserPage, expression: str, arg: Any = None, timeout: float = 15_000) -> None:
    await ui.page.wait_for_function(expression, arg=arg, timeout=timeout)


def page_errors(ui: BrowserPage) -> list[str]:
    """Uncaught exceptions and CSP violations (network errors are expected when a test kills the server)."""
    return [e for e in ui.errors if e.startswith("pageerror") or "CSP violation" in e]
