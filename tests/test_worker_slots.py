"""GET /api/v2/workers says how many slots (jobs at once) each instance has and uses, on
SQLite and PostgreSQL, against a live server running several tasks at once."""

from __future__ import annotations

import uuid
from typing import Any

from tests.jobs import GATES
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.waits import wait_until


async def mine(server: LiveServer) -> dict[str, Any]:
    response = await server.client.get("/api/v2/workers")
    assert response.status_code == 200, response.text
    me = server.services.supervisor.worker_id
    [worker] = [w for w in response.json()["items"] if w["id"] == me]
    return worker


async def test_slots_and_their_use_follow_the_running_jobs(database_url: str) -> None:
    async with live_server(make_settings(database_url, max_concurrent_tasks=3)) as server:
        idle = await mine(server)
        assert (idle["slots"], idle["slots_used"]) == (3, 0)

        gate = f"slots-{uuid.uuid4().hex}"
        created = [await server.create("test.gate", params={"gate": gate}) for _ in range(5)]
        for task in created[:3]:
            await server.wait_for(task["id"], "running")
        full = await mine(server)
        assert (full["slots"], full["slots_used"]) == (3, 3), full
        states = [(await server.get(t["id"]))["state"] for t in created]
        assert states.count("queued") == 2, "the other two wait for a slot"

        GATES[gate].set()
        for task in created:
            assert (await server.wait_for(task["id"]))["state"] == "completed"
        assert (await mine(server))["slots_used"] == 0


async def test_a_parent_waiting_for_its_children_does_not_use_a_slot(server: LiveServer) -> None:
    parent = await server.create("test.parent", params={"children": 2, "seconds": 1.5})

    async def children_running() -> bool:
        listed = await server.client.get("/api/v2/tasks", params={"parent_id": parent["id"]})
        children = listed.json()["items"]
        return len(children) == 2 and all(c["state"] == "running" for c in children)

    await wait_until(children_running, "both children run", within=10)

    async def two_in_slots() -> bool:
        worker = await mine(server)
        return worker["slots_used"] == 2 and len(worker["tasks"]) == 3

    await wait_until(two_in_slots, "the two children in slots, the waiting parent not", within=5)
    assert (await mine(server))["slots"] == 10
    assert (await server.wait_for(parent["id"]))["state"] == "completed"


async def test_the_openapi_document_describes_the_slots(server: LiveServer) -> None:
    spec = (await server.client.get("/openapi.json")).json()
    worker = spec["components"]["schemas"]["WorkerPublic"]
    assert {"slots", "slots_used"} <= set(worker["properties"])
    assert "slots" in worker["required"] and "slots_used" in worker["required"]
