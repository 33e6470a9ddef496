"""A hostile web page in a real chromium, against `taskstate serve` with auth off (the default).

The page is the attacker's own (`http://evil.example`, served by the browser's request
interception): it posts a form to the emergency reset, sends "simple" cross-site requests,
and opens the event stream. Then DNS rebinding: chromium resolves `evil.example` to
127.0.0.1 (`--host-resolver-rules`, as a rebound DNS answer would), so the attacker's page
and the service are one origin in the browser's eyes, and only the `Host` header tells.

Recent chromium refuses a public page's requests to a loopback address by itself (Local
Network Access checks); Firefox, Safari and older browsers do not, and neither does
chromium for a page that is itself on the local network. The checks are turned off here,
so that what is tested is what the server does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from tests.support.browser import launched_chromium, missing_browser
from tests.support.processes import ServerProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Route

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FAR_FUTURE = "2999-01-01T00:00:00Z"
EVIL_PAGE = "<!doctype html><title>a page the user happens to visit</title><body></body>"

#: Runs in the attacker's page: opens the event stream and reports what it heard.
LISTEN = """async (url) => await new Promise((resolve) => {
    const heard = [];
    const ws = new WebSocket(url);
    ws.onmessage = (event) => heard.push(JSON.parse(event.data));
    ws.onclose = (event) => resolve({ heard, code: event.code });
    setTimeout(() => resolve({ heard, code: 'still open' }), 5000);
})"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rebinding_browser() -> AsyncIterator[Browser]:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    async with launched_chromium(
        "--host-resolver-rules=MAP evil.example 127.0.0.1",
        "--disable-features=LocalNetworkAccessChecks",
    ) as browser:
        yield browser


async def evil_page(browser: Browser, origin: str) -> Page:
    """A page at `origin` whose document comes from the attacker (everything else from the network)."""
    context = await browser.new_context()
    page = await context.new_page()

    async def attacker_document(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body=EVIL_PAGE)

    await page.route(f"{origin}/", attacker_document)
    await page.goto(f"{origin}/")
    return page


async def queued_task(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.post(
        "/api/v2/tasks", json={"type": "demo.sleep", "params": {"seconds": 60}, "run_at": FAR_FUTURE}
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def test_a_cross_site_page_can_neither_act_nor_listen(
    rebinding_browser: Browser, server: ServerProcess, api: httpx.AsyncClient
) -> None:
    task = await queued_task(api)
    page = await evil_page(rebinding_browser, "http://evil.example")
    try:
        events = server.url.replace("http://", "ws://", 1) + "/api/v2/events?since=0"
        listened = await page.evaluate(LISTEN, events)
        assert listened["code"] == 1008, listened
        assert [(m["type"], m["error"]) for m in listened["heard"]] == [("error", "forbidden")], listened
        # "Simple" requests need no preflight: the browser sends them and hides only the answer.
        await page.evaluate(
            """async ([base, id]) => {
                const simple = { method: 'POST', mode: 'no-cors' };
                await fetch(`${base}/api/v2/tasks/${id}/cancel`, simple);
                await fetch(`${base}/api/v2/tasks/cleanup`,
                            { ...simple, headers: { 'content-type': 'text/plain' }, body: '{}' });
            }""",
            [server.url, task["id"]],
        )
        # A form post navigates the page to the answer.
        async with page.expect_navigation():
            await page.evaluate(
                """(action) => {
                    const form = document.createElement('form');
                    form.method = 'POST';
                    form.action = action;
                    form.innerHTML = '<input name="confirm" value="yes">';
                    document.body.append(form);
                    form.submit();
                }""",
                f"{server.url}/api/v2/admin/reset",
            )
        answer = await page.evaluate("document.body.innerText")
        assert '"forbidden"' in answer and "reset" not in answer, answer
    finally:
        await page.context.close()
    assert (await api.get(f"/api/v2/tasks/{task['id']}")).json()["state"] == "queued", "nothing was done"


async def test_a_rebound_host_name_reads_nothing(
    rebinding_browser: Browser, server: ServerProcess, api: httpx.AsyncClient
) -> None:
    task = await queued_task(api)
    # The attacker's page, then its name re-pointed at the service: same origin for the browser.
    origin = f"http://evil.example:{server.port}"
    page = await evil_page(rebinding_browser, origin)
    try:
        read = await page.evaluate(
            """async () => {
                const response = await fetch('/api/v2/tasks/active');
                return { status: response.status, body: await response.text() };
            }"""
        )
        assert read["status"] == 400, read
        assert '"host_not_allowed"' in read["body"] and task["id"] not in read["body"], read
        listened = await page.evaluate(LISTEN, f"ws://evil.example:{server.port}/api/v2/events?since=0")
        assert [(m["type"], m["error"]) for m in listened["heard"]] == [("error", "host_not_allowed")]
        reset = await page.evaluate(
            "async () => (await fetch('/api/v2/admin/reset', { method: 'POST' })).status"
        )
        assert reset == 400
    finally:
        await page.context.close()
    assert (await api.get(f"/api/v2/tasks/{task['id']}")).json()["state"] == "queued"
