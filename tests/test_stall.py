"""An instance that stalls past the orphan timeout (a long pause, a stopped VM, CPU
starvation), then resumes: its job stops, the new attempt owns the task alone, and what the
instance claims afterwards stays its own (issue 12, item 2). Real processes, SIGSTOP/SIGCONT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ServerProcess
from tests.support.readers import read_journal
from tests.support.waits import wait_for_task, wait_until

pytestmark = pytest.mark.timeout(180)

ORPHAN_AFTER = 2.0


@pytest.fixture
async def pair(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    settings = {"TASKSTATE_ORPHAN_AFTER_SECONDS": ORPHAN_AFTER, "TASKSTATE_HEARTBEAT_SECONDS": 0.5}
    a = ServerProcess(database_url, tmp_path, **settings)
    b = ServerProcess(database_url, tmp_path, MAX_CONCURRENT_TASKS=2, **settings)
    try:
        yield a, b
    finally:
        for proc in (a, b):
            proc.stop_quietly()


async def test_a_stalled_instance_stops_its_job_and_keeps_what_it_claims_after(
    pair: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    a, b = pair
    journal = tmp_path / "journal.jsonl"
    await a.start()
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as client:
        body = {"type": "test.journal", "params": {"journal": str(journal), "steps": 60, "delay": 0.1}}
        task = (await client.post("/api/v2/tasks", json=body)).json()
        await wait_until(
            lambda: len(read_journal(journal)) >= 4, "the job to take a few steps on A", 20, poll=0.05
        )
        await b.start()
        assert a.process is not None
        a.pause()
        await asyncio.sleep(ORPHAN_AFTER + 2.5)
        resumed = time.time()
        a.resume()

    async with httpx.AsyncClient(base_url=b.url, timeout=10) as client:
        done = await wait_for_task(client, task["id"], within=40, poll=0.1)
        assert done["state"] == "completed", done
        assert done["attempt"] == 2
        rows = (await client.get(f"/api/v2/tasks/{task['id']}/transitions")).json()["items"]
        assert [r["to_state"] for r in rows].count("orphaned") == 1
        logs = (await client.get(f"/api/v2/tasks/{task['id']}/logs", params={"after": 0})).json()["items"]

    entries = read_journal(journal)
    first = [e for e in entries if e["attempt"] == 1]
    second = [e for e in entries if e["attempt"] == 2]
    assert [e["step"] for e in second if e["event"] == "step"] == list(range(1, 61))
    # The first attempt takes no step once the second has started: on waking, its lease
    # has expired, and the renewed one shows the task is no longer its own.
    assert not [e for e in first if e["event"] == "end"], "the stalled attempt ran to its end"
    overlap = [e for e in first if e["at"] >= second[0]["at"]]
    assert not overlap, f"the stalled attempt went on beside the new one, {len(overlap)} steps"
    assert first[-1]["at"] < resumed
    # The log reads as one: what the first attempt stored before it stalled, then the second's.
    messages = [line["message"] for line in logs]
    kept = [m for m in messages if m.startswith("attempt 1 ")]
    assert kept == [f"attempt 1 step {i}" for i in range(1, len(kept) + 1)]
    assert messages == kept + [f"attempt 2 step {i}" for i in range(1, 61)]
    assert [line["seq"] for line in logs] == list(range(1, len(logs) + 1))

    # Once it beats again, the resumed instance is live: what it claims is not taken from it.
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as client:
        ids = []
        for _ in range(12):
            body = {"type": "test.journal", "params": {"journal": str(journal), "steps": 10, "delay": 0.1}}
            ids.append((await client.post("/api/v2/tasks", json=body)).json()["id"])
        paths = []
        for task_id in ids:
            t = await wait_for_task(client, task_id, within=40, poll=0.1)
            rows = (await client.get(f"/api/v2/tasks/{task_id}/transitions")).json()["items"]
            paths.append((t["state"], [r["to_state"] for r in rows], rows[1]["actor"]))
        assert all(state == "completed" and "orphaned" not in path for state, path, _ in paths), paths
        claimers = {actor for _, _, actor in paths}
        workers = {w["id"]: w for w in (await client.get("/api/v2/workers")).json()["items"]}
    a_id = next(w for w in workers.values() if w["pid"] == a.process.pid)["id"]
    assert f"worker:{a_id}" in claimers, "the resumed instance claimed nothing: the test proved nothing"
    assert workers[a_id]["state"] == "running"
