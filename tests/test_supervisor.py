"""The supervisor in-process: restoration decisions, the sweeper, workers, stuck tasks."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from taskstate.core.db import tasks, utcnow, workers
from taskstate.core.nesting import MAX_JSON_DEPTH
from tests import jobs as test_jobs
from tests.support.databases import sqlite_write_lock
from tests.support.servers import LiveServer, live_server, make_settings


async def prepare_restored(
    server: LiveServer, task_type: str, create_params: dict[str, Any], **row: Any
) -> str:
    """A task as the sweeper leaves it: queued, to be restored, with whatever it had stored."""
    task = await server.create(
        task_type, params=create_params, run_at=(utcnow() + timedelta(days=1)).isoformat()
    )
    values = {
        "restore_pending": True,
        "restoration_source": "worker_lost",
        "attempt": 2,
        "run_at": utcnow(),
        **row,
    }
    async with server.services.store.db.writer.begin() as conn:
        await conn.execute(sa.update(tasks).where(tasks.c.id == task["id"]).values(**values))
    server.services.supervisor.wake()
    return str(task["id"])


async def test_restored_task_resumes_from_a_valid_checkpoint(server: LiveServer) -> None:
    task_id = await prepare_restored(server, "demo.count", {"to": 4, "delay": 0}, checkpoint='{"n": 2}')
    done = await server.wait_for(task_id)
    assert done["state"] == "completed"
    assert done["result"] == {"counted_from_restart": 2, "final": 4}
    assert done["restoration_count"] == 1
    assert done["last_restored_at"] is not None
    assert done["restoration_decision"] == "checkpoint: from the last checkpoint"  # CONTRACT §6 codes


async def test_unreadable_checkpoint_starts_fresh_with_a_warning(server: LiveServer) -> None:
    task_id = await prepare_restored(server, "demo.count", {"to": 3, "delay": 0}, checkpoint="{not json")
    done = await server.wait_for(task_id)
    assert done["state"] == "completed"
    assert done["result"]["counted_from_restart"] == 0
    assert done["restoration_decision"].startswith("fresh: restored without its checkpoint")
    assert done["restoration_count"] == 1


async def test_params_that_no_longer_match_fail_the_restoration(server: LiveServer) -> None:
    task_id = await prepare_restored(server, "demo.count", {"to": 3}, params={"to": "three"})
    done = await server.wait_for(task_id)
    assert done["state"] == "failed"
    assert done["reason"] == "invalid_params"
    assert done["restoration_decision"].startswith("failed: params no longer match")


async def test_a_type_no_longer_registered_fails_the_restoration(server: LiveServer) -> None:
    task_id = await prepare_restored(server, "demo.noop", {}, type="gone.job")
    done = await server.wait_for(task_id)
    assert done["state"] == "failed"
    assert done["reason"] == "unknown_task_type"
    assert "gone.job" in done["error"]
    assert done["restoration_decision"].startswith("failed:")


async def test_checkpoint_over_the_limit_fails_the_task_clearly(database_url: str) -> None:
    async with live_server(make_settings(database_url, max_checkpoint_bytes=100)) as server:
        small = await server.create("test.checkpoint", params={"size": 10})
        big = await server.create("test.checkpoint", params={"size": 1000})
        assert (await server.wait_for(small["id"]))["state"] == "completed"
        done = await server.wait_for(big["id"])
        assert (done["state"], done["error_type"]) == ("failed", "CheckpointTooLarge")
        assert "the limit is 100" in done["error"]


async def test_checkpoint_nested_too_deep_fails_the_task_clearly(server: LiveServer) -> None:
    ok = await server.create("test.deep_checkpoint", params={"depth": MAX_JSON_DEPTH})
    deep = [await server.create("test.deep_checkpoint", params={"depth": d}) for d in (65, 900, 100_000)]
    assert (await server.wait_for(ok["id"]))["state"] == "completed"
    for task in deep:
        done = await server.wait_for(task["id"])
        assert (done["state"], done["error_type"], done["has_checkpoint"]) == ("failed", "ValueError", False)
        limit = f"checkpoint nests arrays and objects deeper than the limit of {MAX_JSON_DEPTH}"
        assert limit in done["error"], done["error"]


async def insert_lost_worker(server: LiveServer, worker_id: str) -> None:
    long_ago = utcnow() - timedelta(minutes=10)
    async with server.services.store.db.writer.begin() as conn:
        await conn.execute(
            workers.insert().values(
                id=worker_id,
                host="elsewhere",
                pid=1,
                version="0",
                started_at=long_ago,
                heartbeat_at=long_ago,
                state="running",
            )
        )


async def hold(server: LiveServer, task_id: str, worker_id: str, state: str, **row: Any) -> None:
    async with server.services.store.db.writer.begin() as conn:
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == task_id)
            .values(state=state, worker_id=worker_id, run_at=utcnow(), **row)
        )


async def test_sweeper_requeues_the_tasks_of_a_lost_worker(server: LiveServer) -> None:
    await insert_lost_worker(server, "lost-1")
    future = (utcnow() + timedelta(days=1)).isoformat()
    running = await server.create("demo.noop", run_at=future)
    exhausted = await server.create("demo.noop", run_at=future, max_attempts=1)
    stopping = await server.create("demo.noop", run_at=future)
    await hold(server, running["id"], "lost-1", "running")
    await hold(server, exhausted["id"], "lost-1", "collecting")
    await hold(server, stopping["id"], "lost-1", "stopping")

    done = await server.wait_for(running["id"], "completed")
    assert done["attempt"] == 2
    assert done["restoration_source"] == "worker_lost"
    assert done["restoration_count"] == 1
    rows = await server.transitions(running["id"])
    swept = [
        (r["from_state"], r["to_state"], r["reason"], r["actor"]) for r in rows if r["actor"] == "sweeper"
    ]
    assert swept == [
        ("running", "orphaned", "worker_lost", "sweeper"),
        ("orphaned", "queued", "worker_lost", "sweeper"),
    ]

    failed = await server.wait_for(exhausted["id"])
    assert (failed["state"], failed["reason"], failed["error_type"]) == (
        "failed",
        "attempts_exhausted",
        "WorkerLost",
    )
    gone = await server.wait_for(stopping["id"])
    assert (gone["state"], gone["reason"]) == ("failed", "worker_lost")

    listed = (await server.client.get("/api/v2/workers")).json()["items"]
    by_id = {w["id"]: w for w in listed}
    assert by_id["lost-1"]["state"] == "lost"
    assert by_id["lost-1"]["tasks"] == []


async def test_workers_lists_this_instance_and_what_it_holds(server: LiveServer) -> None:
    task = await server.create("test.gate", params={"gate": "workers"})
    await server.wait_for(task["id"], "running")
    response = await server.client.get("/api/v2/workers")
    assert response.status_code == 200
    me = server.services.supervisor.worker_id
    [mine] = [w for w in response.json()["items"] if w["id"] == me]
    assert mine["state"] == "running"
    assert mine["heartbeat_age_seconds"] < 5
    assert mine["tasks"] == [task["id"]]
    assert mine["pid"] > 0
    from tests.jobs import GATES

    GATES["workers"].set()
    await server.wait_for(task["id"], "completed")


async def test_a_stuck_task_is_failed_with_reason_timeout(server: LiveServer) -> None:
    me = server.services.supervisor.worker_id
    task = await server.create("demo.noop", run_at=(utcnow() + timedelta(days=1)).isoformat())
    await hold(
        server, task["id"], me, "running", timeout_seconds=1, heartbeat_at=utcnow() - timedelta(minutes=5)
    )
    ready = (await server.client.get("/readyz")).json()
    assert ready["checks"]["stuck_tasks"] in (0, 1)
    done = await server.wait_for(task["id"])
    assert (done["state"], done["reason"], done["error_type"]) == ("failed", "timeout", "TimeoutError")
    rows = await server.transitions(task["id"])
    assert rows[-1]["actor"] == "sweeper"


async def test_graceful_stop_hands_running_jobs_back(database_url: str) -> None:
    async with live_server(make_settings(database_url, shutdown_grace_seconds=0.2)) as server:
        task = await server.create("test.gate", params={"gate": "never"})
        await server.wait_for(task["id"], "running")
        supervisor = server.services.supervisor
    # The server has stopped: its job was handed back to the queue.
    async with live_server(make_settings(database_url, run_supervisor=False)) as again:
        back = await again.get(task["id"])
        assert back["state"] == "queued"
        assert back["restoration_source"] == "server_restart"
        assert back["worker_id"] is None
        rows = await again.transitions(task["id"])
        assert [r["to_state"] for r in rows][-2:] == ["orphaned", "queued"]
    assert supervisor.running == {}
    await asyncio.sleep(0)


async def test_a_graceful_stop_lets_what_a_claim_in_flight_started_finish(tmp_path: Path) -> None:
    """A stop that arrives while a claim is in flight: the jobs that claim starts get the
    grace period like every other, instead of being handed back after they ran (which
    would run them again, on the attempt they already used). Issue 12, item 10."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'taskstate.db'}"
    settings = make_settings(url, shutdown_grace_seconds=5, poll_seconds=0.05)
    async with live_server(settings) as server:
        supervisor = server.services.supervisor
        soon = utcnow() + timedelta(seconds=0.5)
        ids = [(await server.create("test.record", run_at=soon.isoformat()))["id"] for _ in range(3)]
        # Hold SQLite's write lock while the tasks fall due: the next claim waits for it.
        with sqlite_write_lock(tmp_path / "taskstate.db"):
            await asyncio.sleep(0.8)
            stopping = asyncio.create_task(supervisor.stop())
            await asyncio.sleep(0.2)
        await asyncio.wait_for(stopping, timeout=15)
        assert sorted(task_id for task_id, _ in test_jobs.RUNS) == sorted(ids), "the claim ran nothing"
        for task_id in ids:
            task = await server.get(task_id)
            path = [r["to_state"] for r in await server.transitions(task_id)]
            assert task["state"] == "completed", path
            assert path == ["queued", "preparing", "running", "collecting", "completed"]
