"""Transitions that share one transaction (`Store.transition(..., then=[Step…])`): a job with
no hook between two transitions writes both in one commit. Each keeps its own row, `seq`
and event; every one is published, in `seq` order, and none before the commit. On both
engines, with many tasks at once so that the writer groups them."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import pytest
import sqlalchemy as sa

from taskstate.core import questions as task_questions
from taskstate.core.bus import Event
from taskstate.core.creation import NewTask
from taskstate.core.db import questions, tasks, transitions
from taskstate.core.states import State
from taskstate.core.store import Guard, Step, Store, TransitionResult
from taskstate.core.writer import WriteBatch
from tests.support.databases import audit_transactions, open_store
from tests.support.servers import live_server, make_settings

WORKER = "worker-under-test"
#: The two transitions a job without a `collect` hook writes in one transaction.
FINISHING = ["collecting", "completed"]


async def running_tasks(store: Store, n: int) -> list[tuple[str, Guard]]:
    created = await store.create_tasks([NewTask("demo.noop", {}, f"t{i}") for i in range(n)], actor="test")
    claimed = await store.claim(WORKER, n)
    assert {row["id"] for row in claimed} == {c.task["id"] for c in created}
    out = []
    for row in claimed:
        guard = Guard(WORKER, row["attempt"])
        result = await store.transition(
            row["id"], State.RUNNING, reason="started", actor="w", guard=guard, expect_from=State.PREPARING
        )
        assert result.applied
        out.append((row["id"], guard))
    return out


async def collect_and_complete(
    store: Store, task_id: str, guard: Guard, result: Any = None
) -> TransitionResult:
    """What a job without a `collect` hook writes: `collecting`, then `completed`, in one go."""
    return await store.transition(
        task_id,
        State.COLLECTING,
        reason="collecting",
        actor="w",
        guard=guard,
        expect_from=State.RUNNING,
        then=[Step(State.COMPLETED, "completed", {"result": result})],
    )


async def states_in_database(store: Store, ids: list[str]) -> dict[str, str]:
    async with store.db.reader.connect() as conn:
        rows = await conn.execute(sa.select(tasks.c.id, tasks.c.state).where(tasks.c.id.in_(ids)))
        return dict(rows.all())


@pytest.mark.parametrize("n", [1, 12])
async def test_shared_transitions_are_published_in_seq_order_and_only_after_the_commit(
    database_url: str, n: int
) -> None:
    async with open_store(database_url) as store:
        running = await running_tasks(store, n)
        ids = [task_id for task_id, _ in running]
        # A reader connection opened now: on SQLite a new one waits for the writer's lock.
        assert set((await states_in_database(store, ids)).values()) == {"running"}
        published: list[Event] = []
        store.bus.add_listener(published.append)
        inside = asyncio.Event()
        release = asyncio.Event()

        async def hold_the_transaction_open(wb: WriteBatch) -> None:
            inside.set()
            await release.wait()

        # All submitted in one loop turn: one batch, one transaction, held open by the last op.
        finishing = [
            asyncio.create_task(collect_and_complete(store, task_id, guard, {"i": i}))
            for i, (task_id, guard) in enumerate(running)
        ]
        holder = asyncio.create_task(store.write(hold_the_transaction_open))
        await asyncio.wait_for(inside.wait(), 10)
        await asyncio.sleep(0.05)
        assert [e for e in published if e.type == "transition" and e.task_id in ids] == []
        assert set((await states_in_database(store, ids)).values()) == {"running"}, "nothing is committed yet"

        release.set()
        await holder
        results: list[TransitionResult] = await asyncio.gather(*finishing)

        for result in results:
            assert result.applied and [r.to_state for r in result.then] == ["completed"]
            assert result.seq is not None and result.then[0].seq is not None
            assert result.seq < result.then[0].seq
        assert set((await states_in_database(store, ids)).values()) == {"completed"}

        # Every row was written, each with its own seq, and every event published once, in seq order.
        async with store.db.reader.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(transitions.c.seq, transitions.c.task_id, transitions.c.to_state)
                    .where(transitions.c.task_id.in_(ids), transitions.c.to_state.in_(FINISHING))
                    .order_by(transitions.c.seq)
                )
            ).all()
        events = [e for e in published if e.type == "transition" and e.task_id in ids]
        assert [(e.seq, e.task_id, e.payload["to"]) for e in events] == [tuple(r) for r in rows]
        assert len(rows) == 2 * n
        assert [e.seq for e in events] == sorted(e.seq for e in events if e.seq is not None)
        per_task: dict[str, list[str]] = defaultdict(list)
        for e in events:
            per_task[e.task_id].append(e.payload["to"])
            assert e.payload["task"]["state"] == e.payload["to"], "each event carries the task as it was then"
        assert all(path == ["collecting", "completed"] for path in per_task.values())
        assert sorted(per_task) == sorted(ids)


async def test_a_shared_transition_that_is_refused_takes_no_step_after_it(database_url: str) -> None:
    """Cancelled first: the job's `collecting → completed` applies nothing, and writes no row."""
    async with open_store(database_url) as store:
        [(task_id, guard)] = await running_tasks(store, 1)
        cancelled = await store.transition(task_id, State.CANCELLED, reason="cancelled", actor="user")
        assert cancelled.applied
        late = await collect_and_complete(store, task_id, guard, 1)
        assert not late.applied and late.then == []
        assert (await states_in_database(store, [task_id]))[task_id] == "cancelled"
        async with store.db.reader.connect() as conn:
            after = await conn.execute(
                sa.select(sa.func.count())
                .select_from(transitions)
                .where(transitions.c.task_id == task_id, transitions.c.to_state.in_(FINISHING))
            )
            assert after.scalar_one() == 0


async def test_a_shared_transaction_that_fails_publishes_nothing(database_url: str) -> None:
    """The transaction rolls back: neither step is published; retried alone, both apply."""
    async with open_store(database_url) as store:
        running = await running_tasks(store, 3)
        ids = [task_id for task_id, _ in running]
        published: list[Event] = []
        store.bus.add_listener(published.append)
        poisoned = {"armed": True}

        async def fail_once(wb: WriteBatch) -> None:
            if poisoned["armed"]:
                poisoned["armed"] = False
                await wb.conn.execute(sa.text("SELECT * FROM no_such_table_" + uuid.uuid4().hex[:6]))

        finishing = [asyncio.create_task(collect_and_complete(store, t, g)) for t, g in running]
        failing = asyncio.create_task(store.write(fail_once))
        results = await asyncio.gather(*finishing)
        await failing  # retried alone, it passes the second time
        assert all(r.applied and len(r.then) == 1 for r in results)
        events = [e for e in published if e.type == "transition" and e.task_id in ids]
        assert len(events) == 6 and len({e.seq for e in events}) == 6
        assert [e.seq for e in events] == sorted(e.seq for e in events if e.seq is not None)


async def test_tasks_that_finish_together_expire_their_own_pending_questions(database_url: str) -> None:
    """Finished in one grouped transaction, half of them asking: each asking task's
    question expires with it, by the state it ended in, and no other question changes."""
    async with open_store(database_url) as store:
        running = await running_tasks(store, 8)
        asking = running[::2]
        for task_id, guard in asking:
            await task_questions.ask(
                store,
                task_id,
                guard,
                key="k",
                question="go?",
                choices=None,
                context=None,
                timeout_at=None,
                default=None,
            )
        before = await store.write(lambda wb: _pending_count(wb))
        assert before == len(asking)
        results = await asyncio.gather(*(collect_and_complete(store, t, g) for t, g in running[2:]))
        assert all(r.applied for r in results)
        async with store.db.reader.connect() as conn:
            found = await conn.execute(
                sa.select(questions.c.task_id, questions.c.status, questions.c.answered_by)
            )
            by_task = {task_id: (status, by) for task_id, status, by in found.all()}
        assert by_task[asking[0][0]] == ("pending", None), "its task is still running"
        for task_id, _ in asking[1:]:
            assert by_task[task_id] == ("expired", "task completed")


async def _pending_count(wb: WriteBatch) -> int:
    found = await wb.conn.execute(
        sa.select(sa.func.count()).select_from(questions).where(questions.c.status == "pending")
    )
    return int(found.scalar_one())


async def test_a_claim_starts_the_tasks_whose_type_starts_at_once(database_url: str) -> None:
    """One claim statement: tasks of a type in `starting` go on to `running`, each transition
    with its own row, seq and event (the `preparing` one showing the task as it was then);
    another type, and a task being restored, stay `preparing`."""
    async with open_store(database_url) as store:
        published: list[Event] = []
        store.bus.add_listener(published.append)
        plain = await store.create_tasks([NewTask("demo.noop", {}, f"p{i}") for i in range(4)], actor="t")
        hooked = await store.create_tasks([NewTask("test.slow_prepare", {}, "h")], actor="t")
        restored = await store.create_tasks([NewTask("demo.noop", {}, "r")], actor="t")
        restored_id = restored[0].task["id"]
        await store.write(
            lambda wb: wb.conn.execute(
                sa.update(tasks).where(tasks.c.id == restored_id).values(restore_pending=True)
            )
        )
        rows = await store.claim(WORKER, 10, starting=["demo.noop", "demo.sleep"])
        by_id = {row["id"]: row for row in rows}
        assert len(rows) == 6
        for created in plain:
            row = by_id[created.task["id"]]
            assert row["state"] == "running" and row["started"].applied and not row["restoring"]
        assert (
            by_id[hooked[0].task["id"]]["state"] == "preparing"
            and "started" not in by_id[hooked[0].task["id"]]
        )
        assert by_id[restored_id]["state"] == "preparing" and by_id[restored_id]["restoring"]
        assert by_id[restored_id]["restoration_count"] == 1

        ids = [c.task["id"] for c in plain]
        events = [e for e in published if e.type == "transition" and e.task_id in ids]
        assert [e.seq for e in events] == sorted(e.seq for e in events if e.seq is not None)
        for task_id in ids:
            mine = [e.payload for e in events if e.task_id == task_id]
            assert [(m["from"], m["to"]) for m in mine] == [
                (None, "queued"),
                ("queued", "preparing"),
                ("preparing", "running"),
            ]
            preparing, running = mine[1]["task"], mine[2]["task"]
            assert (preparing["state"], preparing["reason"]) == ("preparing", "claimed")
            assert (running["state"], running["reason"]) == ("running", "started")
            assert {k for k in preparing if preparing[k] != running[k]} == {"state", "reason"}
            assert running["worker_id"] == WORKER and running["started_at"] is not None
        async with store.db.reader.connect() as conn:
            found = await conn.execute(
                sa.select(transitions.c.task_id, transitions.c.to_state, transitions.c.reason)
                .where(transitions.c.task_id.in_(ids))
                .order_by(transitions.c.seq)
            )
            stored = found.all()
        assert len(stored) == 3 * len(ids)
        assert {(to, reason) for _, to, reason in stored} == {
            ("queued", "created"),
            ("preparing", "claimed"),
            ("running", "started"),
        }
        assert set((await states_in_database(store, ids)).values()) == {"running"}


async def test_a_job_without_hooks_waits_for_two_commits_and_keeps_five_rows(pg_url: str) -> None:
    """A live server on PostgreSQL, several jobs at once: a job with no `prepare` hook is
    claimed and started in one transaction, one with no `collect` hook collected and
    completed in one (PostgreSQL's `xmin` names the transaction that wrote a row); a job
    with the hooks writes each of those transitions in a transaction of its own."""
    async with live_server(make_settings(pg_url)) as server:
        plain = [await server.create("demo.noop") for _ in range(6)]
        hooked = [
            await server.create("test.slow_prepare", params={"seconds": 0.05}),
            await server.create("test.slow_collect", params={"seconds": 0.05}),
        ]
        for task in [*plain, *hooked]:
            assert (await server.wait_for(task["id"]))["state"] == "completed"
        paths, tx = await audit_transactions(server.services.store)
    lifecycle = ["queued", "preparing", "running", "collecting", "completed"]
    for task in [*plain, *hooked]:
        assert paths[task["id"]] == lifecycle, "the audit keeps every row"
    for task in plain:
        t = task["id"]
        assert tx[t, "preparing"] == tx[t, "running"]
        assert tx[t, "collecting"] == tx[t, "completed"]
        assert tx[t, "running"] != tx[t, "collecting"]
    slow_prepare, slow_collect = (task["id"] for task in hooked)
    assert tx[slow_prepare, "preparing"] != tx[slow_prepare, "running"]
    assert tx[slow_prepare, "collecting"] == tx[slow_prepare, "completed"]
    assert tx[slow_collect, "preparing"] == tx[slow_collect, "running"]
    assert tx[slow_collect, "collecting"] != tx[slow_collect, "completed"]
