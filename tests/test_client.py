"""The Python client (`taskstate.client`) against live servers, on both engines: its calls,
its errors with the contract's codes, `wait`, and `events` reconnecting across a server
killed and restarted without missing or doubling a transition."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from taskstate.client import AsyncClient, Client, ClientError
from tests.support.processes import ServerProcess
from tests.support.servers import LiveServer

pytestmark = pytest.mark.timeout(120)


async def test_the_async_client_submits_waits_and_acts(server: LiveServer) -> None:
    async with AsyncClient(server.base_url) as client:
        task = await client.submit("demo.sleep", {"seconds": 0.3, "steps": 3}, name="from python")
        assert task["state"] == "queued" and task["name"] == "from python"
        done = await client.wait(task["id"], timeout=20)
        assert done["state"] == "completed" and done["result"] == {"slept": 0.3, "steps": 3}
        assert (await client.wait(task["id"], timeout=1))["id"] == task["id"]  # ended already

        asking = await client.submit("demo.ask", {"question": "Ship?", "choices": ["yes", "no"]})
        question = await _question(client, asking["id"])
        await client.answer(asking["id"], question["id"], "yes")
        assert (await client.wait(asking["id"], timeout=20))["result"] == {"answer": "yes"}

        sleeper = await client.submit("demo.sleep", {"seconds": 30})
        cancelled = await client.cancel(sleeper["id"])
        assert cancelled["state"] == "cancelled"
        again = await client.retry(sleeper["id"])
        assert again["retry_of"] == sleeper["id"] and again["restoration_source"] == "manual"
        await client.cancel(again["id"])

        page = await client.tasks(state=["completed"], limit=10)
        assert {t["id"] for t in page["items"]} >= {task["id"], asking["id"]}

        with pytest.raises(ClientError) as missing:
            await client.get("00000000-0000-4000-8000-000000000000")
        assert (missing.value.code, missing.value.status) == ("not_found", 404)
        with pytest.raises(ClientError) as refused:
            await client.cancel(task["id"])
        assert (refused.value.code, refused.value.status) == ("invalid_transition", 409)
        with pytest.raises(ClientError) as invalid:
            await client.submit("demo.sleep", {"seconds": "soon"})
        assert (invalid.value.code, invalid.value.status) == ("validation_error", 422)
        with pytest.raises(TimeoutError):
            await client.wait((await client.submit("demo.sleep", {"seconds": 30}))["id"], timeout=0.5)


async def _question(client: AsyncClient, task_id: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while not (task := await client.get(task_id))["pending_questions"]:  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.05)
    question: dict[str, Any] = task["pending_questions"][0]
    return question


async def test_the_sync_client_does_the_same(server: LiveServer) -> None:
    def use() -> dict[str, Any]:
        with Client(server.base_url) as client:
            task = client.submit("demo.sleep", {"seconds": 0.3, "steps": 2})
            done = client.wait(task["id"], timeout=20)
            with pytest.raises(ClientError) as refused:
                client.stop(task["id"])
            assert refused.value.code == "invalid_transition"
            events = client.events(task_id=task["id"])
            snapshot = next(events)
            assert snapshot["type"] == "snapshot" and snapshot["tasks"][0]["state"] == "completed"
            return done

    done = await asyncio.to_thread(use)
    assert done["state"] == "completed"


async def test_events_reconnect_across_a_restart_without_a_gap_or_a_double(
    database_url: str, tmp_path: Path
) -> None:
    proc = ServerProcess(database_url, tmp_path)
    try:
        await proc.start()
        received: list[dict[str, Any]] = []
        async with AsyncClient(proc.url) as client:

            async def follow() -> None:
                async for event in client.events(since=0, reconnect_for=60):
                    if event["type"] == "transition":
                        received.append(event)

            following = asyncio.create_task(follow())
            first = [await client.submit("demo.sleep", {"seconds": 0.5, "steps": 2}) for _ in range(5)]
            for task in first:
                await client.wait(task["id"], timeout=20)
            await proc.kill()
            await proc.start()  # the same port and database
            second = [await client.submit("demo.noop") for _ in range(5)]
            for task in second:
                await client.wait(task["id"], timeout=30)
            rows = []
            for task in first + second:
                rows += [(r["seq"], r["task_id"], r["to_state"]) for r in await _rows(client, task["id"])]
            async with asyncio.timeout(20):
                while len(received) < len(rows):  # noqa: ASYNC110 (a count to reach)
                    await asyncio.sleep(0.05)
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
    finally:
        proc.stop_quietly()
    seqs = [e["seq"] for e in received]
    assert seqs == sorted(set(seqs)), "a transition came twice or out of order"
    assert sorted(rows) == [(e["seq"], e["task_id"], e["to"]) for e in received]


async def _rows(client: AsyncClient, task_id: str) -> list[dict[str, Any]]:
    answer = await client.request("GET", f"/api/v2/tasks/{task_id}/transitions")
    rows: list[dict[str, Any]] = answer["items"]
    return rows
