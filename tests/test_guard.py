"""What a hostile web page could make the user's browser send, with auth off (the default).

Every request is what a browser would send: a form post from another site (its `Origin`,
a form's content type), a WebSocket opened by a foreign page, a page whose host name was
re-pointed at the service (DNS rebinding: a foreign `Host`). httpx and websockets send
`Host: 127.0.0.1:PORT` and no `Origin` unless told to, like any non-browser client.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.support.servers import LiveServer, live_server, make_settings

EVIL = "http://evil.example"
FAR_FUTURE = "2999-01-01T00:00:00Z"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def port_of(server: LiveServer) -> int:
    port = urlsplit(server.base_url).port
    assert port is not None
    return port


async def first_message(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(10):
        message = json.loads(await ws.recv())
    assert isinstance(message, dict)
    return message


async def assert_refused(ws: ClientConnection, error: str) -> None:
    """The handshake's refusal: one error message, then close 1008; never a snapshot."""
    message = await first_message(ws)
    assert (message["type"], message["error"]) == ("error", error), message
    async with asyncio.timeout(10):
        await ws.wait_closed()
    assert ws.close_code == 1008


async def test_a_cross_site_form_post_changes_nothing(server: LiveServer) -> None:
    task = await server.create("demo.sleep", params={"seconds": 60}, run_at=FAR_FUTURE)
    for path in ("/api/v2/admin/reset", "/api/v2/tasks/cleanup", f"/api/v2/tasks/{task['id']}/cancel"):
        forged = await server.client.post(
            path, content=b"older_than_days=0", headers={**FORM, "Origin": EVIL}
        )
        assert forged.status_code == 403, (path, forged.text)
        assert forged.json()["error"] == "forbidden"
        assert "cross-origin" in forged.json()["detail"]
        assert forged.headers["x-content-type-options"] == "nosniff"
        # A form (or a text/plain "simple request") that shows no Origin: not JSON, refused too.
        for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; b=x"):
            formed = await server.client.post(path, content=b"x=1", headers={"content-type": content_type})
            assert formed.status_code == 415, (path, content_type, formed.text)
            assert formed.json()["error"] == "unsupported_media_type"
        headless = await server.client.post(path, content=b"{}", headers={"content-length": "2"})
        assert headless.status_code == 415, headless.text
    assert (await server.get(task["id"]))["state"] == "queued", "nothing was reset or cancelled"


async def test_same_origin_and_origin_less_requests_work(server: LiveServer) -> None:
    same = {"Origin": f"http://127.0.0.1:{port_of(server)}"}
    created = await server.client.post(
        "/api/v2/tasks", json={"type": "demo.sleep", "run_at": FAR_FUTURE}, headers=same
    )
    assert created.status_code == 201, created.text
    assert (await server.client.get("/api/v2/tasks/active", headers=same)).status_code == 200
    # A bodyless POST without a content type (`curl -X POST …/cancel`) is not a form.
    cancelled = await server.client.post(f"/api/v2/tasks/{created.json()['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    reset = await server.client.post("/api/v2/admin/reset", headers=same)
    assert reset.status_code == 200, reset.text
    charset = {"content-type": "application/json; charset=utf-8", **same}
    body = json.dumps({"older_than_days": 1}).encode()
    assert (
        await server.client.post("/api/v2/tasks/cleanup", content=body, headers=charset)
    ).status_code == 200
    # The UI itself, and the same origin written as localhost.
    assert (await server.client.get("/", headers={"Host": f"localhost:{port_of(server)}"})).status_code == 200
    other_port = {"Origin": f"http://127.0.0.1:{port_of(server) + 1}"}
    assert (await server.client.get("/api/v2/tasks/active", headers=other_port)).status_code == 403


async def test_a_foreign_page_gets_no_events(server: LiveServer) -> None:
    await server.create("demo.sleep", params={"seconds": 60}, run_at=FAR_FUTURE)
    for origin in (EVIL, "null", f"https://127.0.0.1:{port_of(server)}"):
        async with connect(server.ws_url + "?since=0", origin=origin, proxy=None) as ws:
            await assert_refused(ws, "forbidden")
    async with connect(server.ws_url + "?since=0", origin=f"http://127.0.0.1:{port_of(server)}") as ws:
        assert (await first_message(ws))["type"] == "transition"
    async with connect(server.ws_url) as ws:
        assert (await first_message(ws))["type"] == "snapshot"


async def test_a_foreign_host_name_is_refused(server: LiveServer) -> None:
    """DNS rebinding: evil.example re-pointed at 127.0.0.1 is same-origin for the browser."""
    await server.create("demo.sleep", params={"seconds": 60}, run_at=FAR_FUTURE)
    port = port_of(server)
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io"):
        response = await server.client.get("/api/v2/tasks/active", headers={"Host": host})
        assert response.status_code == 400, (host, response.text)
        assert response.json()["error"] == "host_not_allowed"
        assert "items" not in response.json()
    rebound = f"ws://evil.example:{port}/api/v2/events"
    async with connect(rebound, host="127.0.0.1", port=port, proxy=None) as ws:
        await assert_refused(ws, "host_not_allowed")
    for host in (f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}", "10.1.2.3:80"):
        response = await server.client.get("/api/v2/tasks/active", headers={"Host": host})
        assert response.status_code == 200, (host, response.text)


async def test_hosts_and_origins_from_the_settings(database_url: str) -> None:
    settings = make_settings(
        database_url,
        allowed_hosts="tasks.example.org, Other.Example:8080",
        cors_origins="https://ui.example.org",
    )
    async with live_server(settings) as server:
        port = port_of(server)
        for host, status in (("tasks.example.org", 200), ("other.example:1", 200), ("localhost", 200)):
            response = await server.client.get("/api/v2/tasks/active", headers={"Host": host})
            assert response.status_code == status, (host, response.text)
        assert (await server.client.get("/healthz", headers={"Host": "evil.example"})).status_code == 400
        listed = {"Origin": "https://ui.example.org"}
        created = await server.client.post(
            "/api/v2/tasks", json={"type": "demo.sleep", "run_at": FAR_FUTURE}, headers=listed
        )
        assert created.status_code == 201, created.text
        assert created.headers["access-control-allow-origin"] == "https://ui.example.org"
        async with connect(server.ws_url, origin="https://ui.example.org") as ws:
            assert (await first_message(ws))["type"] == "snapshot"
        # Same origin under an allowed name (a proxy that keeps the Host header).
        named = {"Host": f"tasks.example.org:{port}", "Origin": f"http://tasks.example.org:{port}"}
        assert (await server.client.post("/api/v2/admin/reset", headers=named)).status_code == 200
        # A rebound name whose page claims to be the allowed one: the Host gives it away.
        forged = await server.client.post(
            "/api/v2/admin/reset", headers={"Host": "evil.example", "Origin": "https://ui.example.org"}
        )
        assert forged.status_code == 400

    async with live_server(make_settings(database_url, allowed_hosts="*", cors_origins="*")) as server:
        anything = {"Host": "evil.example", "Origin": EVIL}
        assert (await server.client.get("/api/v2/tasks/active", headers=anything)).status_code == 200


async def test_a_wildcard_bind_answers_for_this_machines_name(database_url: str) -> None:
    async with live_server(make_settings(database_url, host="0.0.0.0")) as server:
        hostname = socket.gethostname()
        mine = await server.client.get("/api/v2/tasks/active", headers={"Host": f"{hostname}:8000"})
        assert mine.status_code == 200, mine.text
        evil = await server.client.get("/api/v2/tasks/active", headers={"Host": "evil.example"})
        assert evil.status_code == 400


async def test_the_refusals_are_in_the_openapi_document(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"400", "403"} <= set(paths["/healthz"]["get"]["responses"])
    for operation in ("/api/v2/admin/reset", "/api/v2/tasks", "/api/v2/tasks/{task_id}/cancel"):
        assert "415" in paths[operation]["post"]["responses"], operation
    assert "host_not_allowed" in paths["/healthz"]["get"]["responses"]["400"]["description"]
