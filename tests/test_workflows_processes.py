"""Workflows with real processes and real signals: a parent killed while it waits gets its
own children back, schedules fire exactly once per firing across instances while one dies,
and an approval given while the instance that would run the task is down is honoured."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ServerProcess

pytestmark = pytest.mark.timeout(240)


async def wait_until(client: httpx.AsyncClient, task_id: str, predicate: Any, within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while True:
        answer = await client.get(f"/api/v2/tasks/{task_id}")
        if answer.status_code == 200 and predicate(task := answer.json()):
            return task
        assert time.monotonic() < deadline, f"timed out: {answer.text[:500]}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def proc(database_url: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(database_url, tmp_path)
    try:
        yield server
    finally:
        server.stop_quietly()


async def test_a_parent_killed_while_it_waits_gets_its_own_children_back(proc: ServerProcess) -> None:
    await proc.start()
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
        body = {"type": "test.parent", "params": {"children": 3, "seconds": 4}}
        parent = (await client.post("/api/v2/tasks", json=body)).json()
        waiting = await wait_until(client, parent["id"], lambda t: len(t["waiting_for"]) == 3)
        spawned = sorted(waiting["waiting_for"])
    await proc.kill()

    await proc.start()
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
        done = await wait_until(client, parent["id"], lambda t: t["is_terminal"], within=90)
        assert done["state"] == "completed", done
        assert sorted(done["result"]["children"]) == spawned, "the restored parent spawned new children"
        children = (await client.get("/api/v2/tasks", params={"parent_id": parent["id"]})).json()
        assert children["total"] == 3, "a child was spawned twice"
        assert {c["state"] for c in children["items"]} == {"completed"}
        assert done["restoration_count"] == 1 and done["restoration_code"] == "proceed"
        logs = (await client.get(f"/api/v2/tasks/{parent['id']}/logs")).json()["items"]
    lines = [line["message"] for line in logs]
    restored = [line for line in lines if line.startswith("restored:")]
    assert len(restored) == 1 and all(child in restored[0] for child in spawned), lines


async def test_an_approval_given_while_the_runner_is_down_is_honoured(
    database_url: str, tmp_path: Path
) -> None:
    runner = ServerProcess(database_url, tmp_path)
    api_only = ServerProcess(database_url, tmp_path, TASKSTATE_RUN_SUPERVISOR=0)
    try:
        await runner.start()
        await api_only.start()
        async with httpx.AsyncClient(base_url=runner.url, timeout=10) as client:
            body = {"type": "demo.noop", "requires_approval": True}
            task = (await client.post("/api/v2/tasks", json=body)).json()
        await runner.kill()
        async with httpx.AsyncClient(base_url=api_only.url, timeout=10) as client:
            [question] = (await client.get("/api/v2/questions")).json()["items"]
            url = f"/api/v2/tasks/{task['id']}/questions/{question['id']}/answer"
            assert (await client.post(url, json={"answer": "approve"})).status_code == 200
            await asyncio.sleep(1)
            assert (await client.get(f"/api/v2/tasks/{task['id']}")).json()["state"] == "queued"
        await runner.start()
        async with httpx.AsyncClient(base_url=runner.url, timeout=10) as client:
            done = await wait_until(client, task["id"], lambda t: t["is_terminal"])
        assert done["state"] == "completed" and not done["pending_questions"]
    finally:
        runner.stop_quietly()
        api_only.stop_quietly()


async def test_three_instances_fire_each_second_once_while_one_dies(pg_url: str, tmp_path: Path) -> None:
    """A schedule every second for 20 s, three instances on one PostgreSQL, one SIGKILLed
    halfway: exactly one task per firing, none missing (catch_up: all), none doubled."""
    procs = [ServerProcess(pg_url, tmp_path) for _ in range(3)]
    try:
        await procs[0].start()
        await asyncio.gather(*(p.start() for p in procs[1:]))
        async with httpx.AsyncClient(base_url=procs[1].url, timeout=10) as client:
            body = {"type": "demo.noop", "interval_seconds": 1, "catch_up": "all", "name": "tick"}
            schedule = (await client.post("/api/v2/schedules", json=body)).json()
            await asyncio.sleep(10)
            await procs[0].kill()
            await asyncio.sleep(10)
            paused = await client.post(f"/api/v2/schedules/{schedule['id']}/pause")
            assert paused.status_code == 200
            await asyncio.sleep(1)
            params = {"trigger_source": f"schedule:{schedule['id']}", "limit": 500}
            fired = (await client.get("/api/v2/tasks", params=params)).json()["items"]
    finally:
        for proc in procs:
            proc.stop_quietly()
    firings = sorted(_firing(t) for t in fired)
    assert len(firings) >= 18, f"{len(firings)} firings in 20 s"
    assert len(set(firings)) == len(firings), "a firing created two tasks"
    gaps = [b - a for a, b in itertools.pairwise(firings) if b - a != timedelta(seconds=1)]
    assert not gaps, f"firings missing: {gaps}"


def _firing(task: dict[str, Any]) -> datetime:
    """The firing time a scheduled task was made for (its idempotency key ends with it)."""
    return datetime.fromisoformat(task["idempotency_key"].split(":", 2)[2])
