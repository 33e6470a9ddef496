"""Progress and log lines of many jobs at once: every line and the latest progress reach the
database, whatever the number of jobs reporting in the same flush (issue 12, item 1)."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import httpx
import pytest

from tests import jobs as test_jobs
from tests.support.databases import database_name, pg_dsn, terminate_connections
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.waits import wait_until

pytestmark = pytest.mark.timeout(90)

JOBS = 10
LINES = 7


async def _stored(client: httpx.AsyncClient, task_id: str) -> tuple[dict[str, object], list[str]]:
    """The task and its log lines as stored (a 503 from a connection just lost is retried)."""
    for _ in range(20):
        task = await client.get(f"/api/v2/tasks/{task_id}")
        logs = await client.get(f"/api/v2/tasks/{task_id}/logs", params={"after": 0})
        if task.status_code == logs.status_code == 200:
            return task.json(), [line["message"] for line in logs.json()["items"]]
        assert {task.status_code, logs.status_code} <= {200, 503}, (task.text, logs.text)
    raise AssertionError("the API kept answering 503")


async def test_every_line_and_the_latest_progress_of_concurrent_jobs_is_stored(server: LiveServer) -> None:
    ids = [
        (await server.create("test.report", params={"gate": "report", "lines": LINES, "progress": 75}))["id"]
        for _ in range(JOBS)
    ]
    # While they wait, the database (what another instance or a later page reads) is current.
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        stored = [await _stored(server.client, task_id) for task_id in ids]
        if all(t["progress"] == 75 and len(lines) == LINES for t, lines in stored):
            break
        stale = [(t["state"], t["progress"], len(lines)) for t, lines in stored]
        assert asyncio.get_running_loop().time() < deadline, f"(state, progress, lines) stored: {stale}"
        await asyncio.sleep(0.1)
    for task_id, (task, lines) in zip(ids, stored, strict=True):
        assert lines == [f"{task_id} line {i}" for i in range(1, LINES + 1)]
        assert task["items_processed"] == LINES and task["log_lines"] == LINES
    test_jobs.GATES["report"].set()
    for task_id in ids:
        done = await server.wait_for(task_id)
        assert done["state"] == "completed"
        _, lines = await _stored(server.client, task_id)
        assert lines == [f"{task_id} line {i}" for i in range(1, LINES + 1)]


async def test_demo_sleep_jobs_side_by_side_keep_every_log_line(server: LiveServer) -> None:
    """The case the issue saw: ten `demo.sleep` at once kept 1 of 10 lines each."""
    ids = [
        (await server.create("demo.sleep", params={"seconds": 1.5, "steps": 10}))["id"] for _ in range(JOBS)
    ]
    for task_id in ids:
        task = await server.wait_for(task_id)
        assert task["state"] == "completed", task
        _, lines = await _stored(server.client, task_id)
        assert lines == [f"step {i} of 10" for i in range(1, 11)]


async def test_no_line_is_lost_when_writes_fail(pg_url: str) -> None:
    """A flush whose transaction fails gives its lines back: they go with the next one.

    PostgreSQL's connections are terminated again and again while ten jobs log; every
    line of every job is stored, once, in order.
    """
    settings = make_settings(pg_url, progress_flush_seconds=0.05)
    async with live_server(settings) as server:
        ids = [
            (await server.create("demo.sleep", params={"seconds": 3, "steps": 30}))["id"] for _ in range(JOBS)
        ]
        database = database_name(pg_url)
        store = server.services.store
        # Until writes have failed twice (a connection found closed before a transaction
        # is replaced without failing one), and for at most 3 s of the jobs' run.
        for _ in range(15):
            if store.failed_write_transactions >= 2:
                break
            await asyncio.sleep(random.uniform(0.05, 0.2))
            await terminate_connections(database)
        assert server.services.store.failed_write_transactions > 0, "no write failed: the test proved nothing"
        for task_id in ids:
            task = await _eventually(server, task_id)
            assert task["state"] == "completed", task
            _, lines = await _stored(server.client, task_id)
            assert lines == [f"step {i} of 30" for i in range(1, 31)]


async def test_lines_a_failed_flush_took_are_stored_before_their_job_completes(pg_url: str) -> None:
    """The race a soak run once lost a line to: the periodic flush takes a job's last lines,
    its write fails, and meanwhile the job finishes. The job's own last write must wait for
    that flush to settle and store what it gives back, before the task's final transition.

    A lock on `task_logs` holds the flush's write until its connection is terminated; the job
    is finished while the write hangs, so its final transition is queued behind it.
    """
    database = database_name(pg_url)
    settings = make_settings(pg_url, progress_flush_seconds=0.05)
    async with live_server(settings) as server:
        blocker = await asyncpg.connect(pg_dsn(database))
        try:
            locking = blocker.transaction()
            await locking.start()
            await blocker.execute("LOCK TABLE task_logs IN SHARE MODE")  # inserts wait
            gate = "flush-race"
            task = await server.create("test.report", params={"gate": gate, "lines": 3, "progress": 60})
            waiting = (
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
                " AND pid <> pg_backend_pid()"
            )

            async def flush_waits() -> bool:
                return bool(await blocker.fetchval(waiting, database))

            await wait_until(flush_waits, "a flush waiting on the lock", within=10)
            test_jobs.GATES[gate].set()
            await asyncio.sleep(0.3)  # the job returns and queues its final transition
            failed = server.services.store.failed_write_transactions
            pid = await blocker.fetchval(waiting, database)
            await blocker.fetchval("SELECT pg_terminate_backend($1)", pid)
            await wait_until(
                lambda: server.services.store.failed_write_transactions > failed, "the flush's write failed"
            )
            await asyncio.sleep(0.3)  # time for a final transition that did not wait to commit
            await locking.rollback()
        finally:
            await blocker.close()
        done = await _eventually(server, task["id"])
        assert done["state"] == "completed", done
        _, lines = await _stored(server.client, task["id"])
        assert lines == [f"{task['id']} line {i}" for i in range(1, 4)]
        assert done["log_lines"] == 3


async def _eventually(server: LiveServer, task_id: str) -> dict[str, object]:
    """The task once terminal, reading through the 503s of a connection just lost."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        answer = await server.client.get(f"/api/v2/tasks/{task_id}")
        if answer.status_code == 200 and answer.json()["is_terminal"]:
            task: dict[str, object] = answer.json()
            return task
        assert asyncio.get_running_loop().time() < deadline, answer.text
        await asyncio.sleep(0.05)
