"""When the supervisor looks at the queue: a claim is a transaction, so an instance claims
when something may have become claimable, not each time a slot frees up; a task created
while a slot is free is claimed and started in its creation's own transaction; and a task
that comes due is still found within the poll period while slots keep freeing up."""

from __future__ import annotations

from datetime import datetime, timedelta

from taskstate.core.db import utcnow
from tests.support.databases import audit_transactions
from tests.support.servers import LiveServer, live_server, make_settings

TASKS = 20


async def test_a_task_created_while_a_slot_is_free_starts_in_its_creations_transaction(pg_url: str) -> None:
    """PostgreSQL's `xmin` names the transaction that wrote each audit row: `queued`,
    `preparing` and `running` share one, and each row still has its own `seq`."""
    async with live_server(make_settings(pg_url)) as server:
        created = []
        for _ in range(5):
            task = await server.create("demo.noop")
            assert (await server.wait_for(task["id"]))["state"] == "completed"
            created.append(task["id"])
        paths, tx = await audit_transactions(server.services.store)
    for task_id in created:
        assert paths[task_id] == ["queued", "preparing", "running", "collecting", "completed"]
        assert tx[task_id, "queued"] == tx[task_id, "preparing"] == tx[task_id, "running"]
        assert tx[task_id, "running"] != tx[task_id, "collecting"]
        assert tx[task_id, "collecting"] == tx[task_id, "completed"]


async def test_an_idle_instance_commits_twice_per_task(server: LiveServer) -> None:
    """One task at a time on an otherwise idle instance: its creation (with its claim and
    start) and its end; no transaction for a claim that finds an empty queue each time a
    job ends. (Heartbeats and output flushes add a few.)"""
    store = server.services.store
    batches_before, _ = store.writer_stats
    for _ in range(TASKS):
        task = await server.create("demo.noop")
        assert (await server.wait_for(task["id"]))["state"] == "completed"
    batches, _ = store.writer_stats
    assert batches - batches_before <= 2 * TASKS + 6, batches - batches_before


async def test_a_task_that_comes_due_starts_while_slots_keep_freeing(server: LiveServer) -> None:
    """Jobs ending every tenth of a second wake the claim loop with nothing new to claim;
    the task due in half a second must still start within the poll period of coming due."""
    poll = server.services.settings.poll_seconds
    runners = [
        await server.create("demo.sleep", params={"seconds": 0.1 * (i + 1), "steps": 1}) for i in range(8)
    ]
    for runner in runners:
        await server.wait_for(runner["id"], "running")
    due_at = utcnow() + timedelta(seconds=0.4)
    delayed = await server.create("demo.noop", run_at=due_at.isoformat())
    done = await server.wait_for(delayed["id"])
    assert done["state"] == "completed"
    waited = (datetime.fromisoformat(done["started_at"]) - due_at).total_seconds()
    assert 0 <= waited < poll + 0.3, waited
    for runner in runners:
        assert (await server.wait_for(runner["id"]))["state"] == "completed"
