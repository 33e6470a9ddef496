"""Several `taskstate serve` processes on one PostgreSQL database: one truth, no lost events."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from taskstate.core.states import TRANSITIONS, State
from tests.support.databases import count_connections, database_name, terminate_connections
from tests.support.processes import ServerProcess
from tests.support.readers import read_database
from tests.support.waits import wait_for_task, wait_until

pytestmark = pytest.mark.timeout(240)


#: The application name of an instance's LISTEN connection (pgsync.py).
LISTEN = "taskstate-listen:%"


async def listening(url: str, instances: int, timeout: float = 30) -> None:
    """Wait until every instance holds its LISTEN connection (it opens just after start-up)."""

    async def all_listen() -> bool:
        return await count_connections(database_name(url), application_name_like=LISTEN) >= instances

    await wait_until(all_listen, f"{instances} LISTEN connections", within=timeout, poll=0.05)


def ws_url(server: ServerProcess, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/api/v2/events{query}"


async def start_all(*servers: ServerProcess) -> None:
    await asyncio.gather(*(s.start() for s in servers))


def stop_all(*servers: ServerProcess) -> None:
    for s in servers:
        s.stop_quietly()


async def test_three_instances_one_killed_every_task_completes_and_every_event_is_seen_once(
    pg_url: str, tmp_path: Path
) -> None:
    servers = [ServerProcess(pg_url, tmp_path, MAX_CONCURRENT_TASKS=10) for _ in range(3)]
    first, _, victim = servers
    try:
        await start_all(*servers)
        seen: list[dict[str, Any]] = []
        async with connect(ws_url(first)) as ws:
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "snapshot"

            ids: list[str] = []
            for i, server in enumerate(servers):
                async with httpx.AsyncClient(base_url=server.url) as client:
                    body = {"tasks": [{"type": "demo.sleep", "params": {"seconds": 1, "steps": 2}}] * 100}
                    response = await client.post("/api/v2/tasks/batch", json=body)
                    assert response.status_code == 201, response.text
                    ids += [t["id"] for t in response.json()["items"]]
                if i == 0:
                    await asyncio.sleep(0.3)
            await asyncio.sleep(0.5)
            await victim.kill()

            completed: set[str] = set()
            async with asyncio.timeout(120):
                while len(completed) < len(ids):
                    message = json.loads(await ws.recv())
                    if message["type"] == "transition":
                        seen.append(message)
                        if message["to"] == "completed":
                            completed.add(message["task_id"])
                    assert message["type"] != "resync"
        rows, _, _ = await read_database(pg_url)
    finally:
        stop_all(*servers)

    assert completed == set(ids)
    # The subscriber on the first instance saw every transition exactly once, in seq order.
    assert [m["seq"] for m in seen] == [r["seq"] for r in rows]
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task_id"]].append(r)
    assert set(by_task) == set(ids)
    killed = 0
    for task_id, task_rows in by_task.items():
        assert task_rows[0]["from_state"] is None and task_rows[0]["to_state"] == "queued"
        for a, b in itertools.pairwise(task_rows):
            assert b["from_state"] == a["to_state"], task_id
            assert State(b["to_state"]) in TRANSITIONS[State(a["to_state"])], task_id
        assert task_rows[-1]["to_state"] == "completed"
        # No task was run by two workers at once: each attempt's worker moves are by one worker,
        # and a second worker only ever starts after the sweeper re-queued the task.
        owner = None
        for r in task_rows:
            if r["to_state"] == "preparing":
                assert owner is None, f"{task_id} claimed while held by {owner}"
                owner = r["actor"]
            elif r["actor"].startswith("worker:"):
                assert r["actor"] == owner, task_id
            if r["to_state"] in ("orphaned", "completed"):
                owner = None
        killed += any(r["to_state"] == "orphaned" for r in task_rows)
    assert killed > 0, "the killed instance held no task: the test proved nothing"


async def test_replay_with_since_under_eight_concurrent_writers(pg_url: str, tmp_path: Path) -> None:
    reader, writer = ServerProcess(pg_url, tmp_path), ServerProcess(pg_url, tmp_path)
    try:
        await start_all(reader, writer)
        stop = asyncio.Event()

        async def hammer(base_url: str) -> None:
            # A bounded amount of work: the API accepts tasks far faster than two instances
            # on 2 cores run them, and an unbounded backlog could not be drained in time.
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
                for _ in range(15):
                    if stop.is_set():
                        break
                    body = {"tasks": [{"type": "demo.noop"}] * random.randint(1, 5)}
                    assert (await client.post("/api/v2/tasks/batch", json=body)).status_code == 201
                    await asyncio.sleep(0.02)

        writers = [asyncio.create_task(hammer(s.url)) for s in (reader, writer) * 4]
        seqs: list[int] = []
        last = 0
        for _ in range(50):
            async with connect(ws_url(reader, f"?since={last}")) as ws:
                deadline = time.monotonic() + random.uniform(0.02, 0.1)
                while time.monotonic() < deadline:
                    try:
                        async with asyncio.timeout(max(0.001, deadline - time.monotonic())):
                            message = json.loads(await ws.recv())
                    except TimeoutError:
                        break
                    if message["type"] == "transition":
                        seqs.append(message["seq"])
                        last = message["seq"]
        stop.set()
        await asyncio.gather(*writers)
        # Drain: everything up to the end, once more with since.
        await asyncio.sleep(1.0)
        rows, _, _ = await read_database(pg_url)
        async with connect(ws_url(reader, f"?since={last}")) as ws:
            # Both servers are still working off the writers' backlog on 2 cores: be patient.
            async with asyncio.timeout(120):
                while not seqs or seqs[-1] < rows[-1]["seq"]:
                    message = json.loads(await ws.recv())
                    if message["type"] == "transition":
                        seqs.append(message["seq"])
        rows, _, _ = await read_database(pg_url)
    finally:
        stop_all(reader, writer)
    expected = [r["seq"] for r in rows if r["seq"] <= seqs[-1]]
    assert len(expected) > 200, "the writers wrote too little for the test to mean anything"
    assert seqs == expected, "missed or doubled transitions across reconnects"


async def test_listen_connection_killed_events_keep_flowing_and_the_gap_is_replayed(
    pg_url: str, tmp_path: Path
) -> None:
    # A slow tail poll: only the LISTEN connection (or its reconnect) can deliver promptly.
    watcher = ServerProcess(pg_url, tmp_path, TASKSTATE_POLL_SECONDS=30, TASKSTATE_RUN_SUPERVISOR=0)
    worker = ServerProcess(pg_url, tmp_path)
    try:
        await start_all(watcher, worker)
        async with connect(ws_url(watcher)) as ws:
            await ws.recv()  # snapshot
            killed = await terminate_connections(database_name(pg_url), application_name_like=LISTEN, limit=1)
            assert killed, "no LISTEN connection found"
            async with httpx.AsyncClient(base_url=worker.url) as client:
                body = {"tasks": [{"type": "demo.noop"}] * 20}
                created = (await client.post("/api/v2/tasks/batch", json=body)).json()["items"]
            ids = {t["id"] for t in created}
            completed: set[str] = set()
            async with asyncio.timeout(20):
                while completed != ids:
                    message = json.loads(await ws.recv())
                    if message["type"] == "transition" and message["to"] == "completed":
                        completed.add(message["task_id"])

        # The reconnect may still be under way when the last event arrives (it came by
        # the tail poll): give it up to 10 s to show up.
        async def both_listen() -> bool:
            return await count_connections(database_name(pg_url), application_name_like=LISTEN) == 2

        await wait_until(both_listen, "the killed LISTEN connection to be reopened", within=10, poll=0.1)
    finally:
        stop_all(watcher, worker)
    assert completed == ids


async def test_cancel_stop_and_answer_reach_the_job_on_another_instance_within_a_second(
    pg_url: str, tmp_path: Path
) -> None:
    worker = ServerProcess(pg_url, tmp_path, TASKSTATE_POLL_SECONDS=30)
    front = ServerProcess(pg_url, tmp_path, TASKSTATE_POLL_SECONDS=30, TASKSTATE_RUN_SUPERVISOR=0)
    try:
        await start_all(worker, front)
        await listening(pg_url, 2)
        async with httpx.AsyncClient(base_url=worker.url) as w, httpx.AsyncClient(base_url=front.url) as f:
            service = (await w.post("/api/v2/tasks", json={"type": "demo.serve"})).json()
            ask = (await w.post("/api/v2/tasks", json={"type": "demo.ask"})).json()
            sleeper = (
                await w.post(
                    "/api/v2/tasks", json={"type": "demo.sleep", "params": {"seconds": 60, "steps": 600}}
                )
            ).json()

            async def until(task_id: str, check: Any, timeout: float = 15) -> dict[str, Any]:
                return await wait_for_task(w, task_id, until=check, within=timeout, poll=0.01)

            await until(service["id"], lambda t: t["state"] == "serving")
            question = (await until(ask["id"], lambda t: bool(t["pending_questions"])))["pending_questions"][
                0
            ]
            await until(sleeper["id"], lambda t: t["log_lines"] >= 2)

            started = time.monotonic()
            assert (await f.post(f"/api/v2/tasks/{service['id']}/stop")).status_code == 200
            await until(service["id"], lambda t: t["state"] == "completed", timeout=1.0)
            stop_latency = time.monotonic() - started

            started = time.monotonic()
            url = f"/api/v2/tasks/{ask['id']}/questions/{question['id']}/answer"
            assert (await f.post(url, json={"answer": "yes"})).status_code == 200
            done = await until(ask["id"], lambda t: t["state"] == "completed", timeout=1.0)
            answer_latency = time.monotonic() - started
            assert done["result"] == {"answer": "yes"}

            assert (await f.post(f"/api/v2/tasks/{sleeper['id']}/cancel")).status_code == 200
            await asyncio.sleep(1.0)
            lines = (await w.get(f"/api/v2/tasks/{sleeper['id']}")).json()["log_lines"]
            await asyncio.sleep(0.5)
            assert (await w.get(f"/api/v2/tasks/{sleeper['id']}")).json()["log_lines"] == lines, (
                "the cancelled job kept running on the other instance"
            )
    finally:
        stop_all(worker, front)
    print(f"\ncross-instance: stop {stop_latency:.3f} s, answer {answer_latency:.3f} s")
    assert stop_latency < 1.0 and answer_latency < 1.0
