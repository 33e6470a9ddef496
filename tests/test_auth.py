"""Auth with TASKSTATE_AUTH=tokens: every route x role, owner isolation, the WebSocket, tokens."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from taskstate.core.creation import NewTask
from taskstate.web import auth
from tests.support.servers import LiveServer, live_server, make_settings

ZERO = "00000000-0000-4000-8000-000000000000"

#: (method, path, body, the least role that may call it). {task} is a task of the caller's own.
ROUTES: list[tuple[str, str, Any, str | None]] = [
    ("GET", "/healthz", None, None),
    ("GET", "/readyz", None, None),
    ("GET", "/metrics", None, "viewer"),
    ("GET", "/api/v2/task-types", None, "viewer"),
    ("GET", "/api/v2/tasks", None, "viewer"),
    ("GET", "/api/v2/tasks/active", None, "viewer"),
    ("GET", "/api/v2/tasks/{task}", None, "viewer"),
    ("GET", "/api/v2/tasks/{task}/transitions", None, "viewer"),
    ("GET", "/api/v2/tasks/{task}/logs", None, "viewer"),
    ("GET", "/api/v2/questions", None, "viewer"),
    ("GET", "/api/v2/insights", None, "viewer"),
    ("POST", "/api/v2/tasks", {"type": "demo.noop"}, "operator"),
    ("POST", "/api/v2/tasks/batch", {"tasks": [{"type": "demo.noop"}]}, "operator"),
    ("POST", "/api/v2/tasks/{task}/cancel", None, "operator"),
    ("POST", "/api/v2/tasks/{task}/stop", None, "operator"),
    ("POST", "/api/v2/tasks/{task}/retry", None, "operator"),
    ("POST", f"/api/v2/tasks/{{task}}/questions/{ZERO}/answer", {"answer": "x"}, "operator"),
    ("POST", "/api/v2/tasks/cleanup", {"older_than_days": 365}, "admin"),
    ("POST", "/api/v2/admin/reset", None, "admin"),
    ("GET", "/api/v2/workers", None, "admin"),
    ("GET", "/api/v2/tokens", None, "admin"),
    ("POST", "/api/v2/tokens", {"name": "made-by-test", "role": "viewer"}, "admin"),
    ("POST", "/api/v2/tokens/abcdef123456/revoke", None, "admin"),
]
ROLES = ["viewer", "operator", "admin"]


@pytest.fixture
async def secured(database_url: str) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(database_url, auth="tokens")) as server:
        yield server


async def mint(server: LiveServer, name: str, role: str) -> str:
    _, token = await auth.create_token(server.services.store, name, auth.Role(role))
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_route_for_every_role(secured: LiveServer) -> None:
    tokens = {role: await mint(secured, role, role) for role in ROLES}
    rank = {None: -1, **{r: i for i, r in enumerate(ROLES)}}
    for role in ROLES:
        # A task of the caller's own, so that owner checks never hide the role checks.
        [own] = await secured.services.store.create_tasks(
            [NewTask(type="demo.noop", params={}, name="own", owner=role)], actor="test"
        )
        task_id = own.task["id"]
        for method, path, body, least in ROUTES:
            url = path.format(task=task_id)
            anonymous = await secured.client.request(method, url, json=body)
            forged = await secured.client.request(
                method, url, json=body, headers=bearer("ts_0123456789ab_" + "x" * 43)
            )
            answer = await secured.client.request(method, url, json=body, headers=bearer(tokens[role]))
            if least is None:
                assert anonymous.status_code == 200, (method, url)
                continue
            assert anonymous.status_code == 401, (method, url, anonymous.text)
            assert anonymous.json()["error"] == "unauthorized"
            assert anonymous.headers["www-authenticate"] == "Bearer"
            assert forged.status_code == 401, (method, url)
            if rank[role] < rank[least]:
                assert answer.status_code == 403, (role, method, url, answer.text)
                assert answer.json()["error"] == "forbidden"
            else:
                assert answer.status_code not in (401, 403), (role, method, url, answer.text)
    documented = (await secured.client.get("/openapi.json")).json()["paths"]
    for method, path, _, least in ROUTES:
        if least is not None:
            template = path.replace("{task}", "{task_id}").replace(ZERO, "{question_id}")
            template = template.replace("abcdef123456", "{token_id}")
            responses = documented[template][method.lower()]["responses"]
            assert "401" in responses and "403" in responses, (method, template)


async def test_a_non_admin_sees_and_acts_on_its_own_tasks_only(secured: LiveServer) -> None:
    alice, bob = await mint(secured, "alice", "operator"), await mint(secured, "bob", "operator")
    admin = await mint(secured, "root", "admin")
    mine = (
        await secured.client.post("/api/v2/tasks", json={"type": "demo.noop"}, headers=bearer(alice))
    ).json()
    assert mine["owner"] == "alice"
    await secured.client.post("/api/v2/tasks", json={"type": "demo.noop"}, headers=bearer(bob))

    for method, path in (
        ("GET", "/api/v2/tasks/{}"),
        ("GET", "/api/v2/tasks/{}/transitions"),
        ("GET", "/api/v2/tasks/{}/logs"),
        ("POST", "/api/v2/tasks/{}/cancel"),
        ("POST", "/api/v2/tasks/{}/retry"),
    ):
        response = await secured.client.request(method, path.format(mine["id"]), headers=bearer(bob))
        assert response.status_code == 403, (method, path)
    history = (await secured.client.get("/api/v2/tasks", headers=bearer(bob))).json()
    assert {t["owner"] for t in history["items"]} == {"bob"} and history["total"] == 1
    everything = (await secured.client.get("/api/v2/tasks", headers=bearer(admin))).json()
    assert everything["total"] == 2
    assert (await secured.client.get(f"/api/v2/tasks/{mine['id']}", headers=bearer(admin))).status_code == 200


async def test_shared_tasks_lets_every_role_see_every_task(database_url: str) -> None:
    async with live_server(make_settings(database_url, auth="tokens", auth_shared_tasks=True)) as server:
        alice, viewer = await mint(server, "alice", "operator"), await mint(server, "eve", "viewer")
        task = (
            await server.client.post("/api/v2/tasks", json={"type": "demo.noop"}, headers=bearer(alice))
        ).json()
        assert (
            await server.client.get(f"/api/v2/tasks/{task['id']}", headers=bearer(viewer))
        ).status_code == 200
        denied = await server.client.post(f"/api/v2/tasks/{task['id']}/cancel", headers=bearer(viewer))
        assert denied.status_code == 403


async def test_a_revoked_token_is_refused(secured: LiveServer) -> None:
    row, token = await auth.create_token(secured.services.store, "temp", auth.Role.ADMIN)
    assert (await secured.client.get("/api/v2/workers", headers=bearer(token))).status_code == 200
    await auth.revoke_token(secured.services.store, row["id"])
    assert (await secured.client.get("/api/v2/workers", headers=bearer(token))).status_code == 401


async def test_the_websocket_needs_a_token_and_filters_by_owner(secured: LiveServer) -> None:
    alice, bob = await mint(secured, "alice", "operator"), await mint(secured, "bob", "operator")
    async with connect(secured.ws_url) as ws:
        await ws.send(json.dumps({"type": "nothing"}))
        refused = json.loads(await ws.recv())
        assert (refused["type"], refused["error"]) == ("error", "unauthorized")
    async with connect(secured.ws_url + f"?token={bob}") as bob_ws, connect(secured.ws_url) as alice_ws:
        await alice_ws.send(json.dumps({"type": "auth", "token": alice}))
        assert json.loads(await bob_ws.recv())["type"] == "snapshot"
        assert json.loads(await alice_ws.recv())["type"] == "snapshot"
        (await secured.client.post("/api/v2/tasks", json={"type": "demo.noop"}, headers=bearer(alice))).json()
        seen = []
        while len(seen) < 5:
            message = json.loads(await alice_ws.recv())
            if message["type"] == "transition":
                seen.append(message["to"])
        assert seen == ["queued", "preparing", "running", "collecting", "completed"]
        # bob's own task: the first thing bob hears of is his, never alice's.
        mine = (
            await secured.client.post("/api/v2/tasks", json={"type": "demo.noop"}, headers=bearer(bob))
        ).json()
        message = json.loads(await bob_ws.recv())
        assert message["task_id"] == mine["id"]


def test_token_cli_creates_lists_and_revokes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tokens.db'}"
    base = [sys.executable, "-m", "taskstate", "token"]
    created = subprocess.run(
        [*base, "create", "--name", "ops", "--role", "operator", "--json", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    row = json.loads(created.stdout)
    assert row["token"].startswith(f"ts_{row['id']}_") and row["role"] == "operator"
    listed = subprocess.run(
        [*base, "list", "--json", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [t["name"] for t in json.loads(listed.stdout)] == ["ops"]
    assert "token" not in json.loads(listed.stdout)[0]
    again = subprocess.run(
        [*base, "create", "--name", "ops", "--role", "viewer", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "exists already" in again.stdout
    revoked = subprocess.run(
        [*base, "revoke", row["id"], "--json", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(revoked.stdout)["revoked"] is True


FAR_FUTURE = "2999-01-01T00:00:00Z"


async def post_task(server: LiveServer, token: str, body: dict[str, Any]) -> httpx.Response:
    return await server.client.post("/api/v2/tasks", json=body, headers=bearer(token))


async def post_batch(server: LiveServer, token: str, *bodies: dict[str, Any]) -> httpx.Response:
    body = {"tasks": list(bodies)}
    return await server.client.post("/api/v2/tasks/batch", json=body, headers=bearer(token))


async def test_idempotency_keys_are_each_owners_own(secured: LiveServer) -> None:
    alice, bob = await mint(secured, "alice", "operator"), await mint(secured, "bob", "operator")
    admin = await mint(secured, "root", "admin")
    body = {
        "type": "demo.sleep",
        "params": {"seconds": 60},
        "name": "alice's secret",
        "idempotency_key": "order-1",
        "run_at": FAR_FUTURE,
    }
    first = await post_task(secured, alice, body)
    assert first.status_code == 201, first.text
    theirs = await post_task(secured, bob, {**body, "name": "bob's"})
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]
    assert (theirs.json()["owner"], theirs.json()["name"]) == ("bob", "bob's")
    again = await post_task(secured, bob, body)
    assert (again.status_code, again.json()["id"]) == (200, theirs.json()["id"])
    mine_again = await post_task(secured, alice, body)
    assert (mine_again.status_code, mine_again.json()["id"]) == (200, first.json()["id"])

    batch_body = {**body, "idempotency_key": "order-2"}
    alices = await post_batch(secured, alice, batch_body)
    assert alices.status_code == 201, alices.text
    bobs = await post_batch(secured, bob, batch_body)
    assert bobs.status_code == 201, bobs.text
    [a], [b] = alices.json()["items"], bobs.json()["items"]
    assert a["id"] != b["id"] and (a["owner"], b["owner"]) == ("alice", "bob")
    everything = (await secured.client.get("/api/v2/tasks", headers=bearer(admin))).json()
    assert everything["total"] == 4


async def test_a_key_reused_for_another_request_is_a_conflict(secured: LiveServer) -> None:
    alice, admin = await mint(secured, "alice", "operator"), await mint(secured, "root", "admin")
    body = {"type": "demo.sleep", "params": {"seconds": 1}, "idempotency_key": "pay-1", "run_at": FAR_FUTURE}
    first = await post_task(secured, alice, body)
    assert first.status_code == 201, first.text
    for other in ({**body, "params": {"seconds": 2}}, {**body, "type": "demo.noop", "params": {}}):
        refused = await post_task(secured, alice, other)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "idempotency_conflict"
        assert "pay-1" in refused.json()["detail"] and "params" in refused.json()["detail"]
    # The same request (its params as validated, defaults spelled out) is the first task again.
    same = await post_task(secured, alice, {**body, "params": {"seconds": 1, "steps": 10}, "name": "x"})
    assert (same.status_code, same.json()["id"]) == (200, first.json()["id"])

    # In a batch, a conflicting item fails the whole batch, named; nothing of it is created.
    fresh = {**body, "idempotency_key": "pay-2"}
    batch = await post_batch(secured, alice, fresh, {**body, "params": {"seconds": 3}})
    assert batch.status_code == 409, batch.text
    assert (batch.json()["error"], batch.json()["index"]) == ("idempotency_conflict", 1)
    assert batch.json()["detail"].startswith("tasks[1]: ")
    within = await post_batch(secured, alice, fresh, {**fresh, "params": {"seconds": 3}})
    assert (within.status_code, within.json()["index"]) == (409, 1), within.text
    assert (await secured.client.get("/api/v2/tasks", headers=bearer(admin))).json()["total"] == 1
    twice = await post_batch(secured, alice, fresh, fresh)
    assert twice.status_code == 201, twice.text
    assert len({t["id"] for t in twice.json()["items"]}) == 1


async def refused_for_revocation(ws: ClientConnection, within: float) -> dict[str, Any]:
    """The error that ends a socket whose token was revoked; the socket must close, 1008."""
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "error":
                break
        await ws.wait_closed()
    assert ws.close_code == 1008, ws.close_code
    assert isinstance(message, dict)
    return message


async def test_revoking_a_token_closes_its_websockets(secured: LiveServer) -> None:
    row, token = await auth.create_token(secured.services.store, "temp", auth.Role.VIEWER)
    admin = await mint(secured, "root", "admin")
    async with (
        connect(secured.ws_url + f"?token={token}") as by_query,
        connect(secured.ws_url) as by_message,
        connect(secured.ws_url + f"?token={admin}") as other,
    ):
        await by_message.send(json.dumps({"type": "auth", "token": token}))
        for ws in (by_query, by_message, other):
            assert json.loads(await ws.recv())["type"] == "snapshot"
        revoked = await secured.client.post(f"/api/v2/tokens/{row['id']}/revoke", headers=bearer(admin))
        assert revoked.status_code == 200, revoked.text
        for ws in (by_query, by_message):
            message = await refused_for_revocation(ws, within=2)
            assert (message["error"], message["detail"]) == ("unauthorized", "the token was revoked")
        # Another token's socket stays open and hears on, and hears nothing of the revocation.
        task = (
            await secured.client.post("/api/v2/tasks", json={"type": "demo.noop"}, headers=bearer(admin))
        ).json()
        async with asyncio.timeout(10):
            heard = json.loads(await other.recv())
        assert (heard["type"], heard["task_id"]) == ("transition", task["id"])


async def test_a_revocation_on_one_instance_closes_sockets_on_another(pg_url: str) -> None:
    async with (
        live_server(make_settings(pg_url, auth="tokens")) as one,
        live_server(make_settings(pg_url, auth="tokens")) as two,
    ):
        async with asyncio.timeout(10):
            for server in (one, two):
                await server.services.sync.connected.wait()
        row, token = await auth.create_token(one.services.store, "temp", auth.Role.VIEWER)
        admin = await mint(one, "root", "admin")
        async with connect(two.ws_url + f"?token={token}") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            revoked = await one.client.post(f"/api/v2/tokens/{row['id']}/revoke", headers=bearer(admin))
            assert revoked.status_code == 200, revoked.text
            # Well before the periodic re-check (30 s): the notification did it.
            message = await refused_for_revocation(ws, within=3)
            assert message["error"] == "unauthorized"


async def test_a_revocation_by_the_cli_closes_sockets_at_the_next_check(database_url: str) -> None:
    """`taskstate token revoke` writes to the database without any server's bus: the re-check ends it."""
    settings = make_settings(database_url, auth="tokens", token_recheck_seconds=0.5)
    async with live_server(settings) as server:
        row, token = await auth.create_token(server.services.store, "temp", auth.Role.VIEWER)
        async with connect(server.ws_url + f"?token={token}") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "taskstate",
                "token",
                "revoke",
                row["id"],
                "--database-url",
                database_url,
                stdout=asyncio.subprocess.DEVNULL,
            )
            assert await asyncio.wait_for(cli.wait(), 60) == 0
            message = await refused_for_revocation(ws, within=3)
            assert message["error"] == "unauthorized"
