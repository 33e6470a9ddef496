"""The instances: one row each, heartbeated, listed with the tasks they hold and the slots
(jobs at once) they have and use.

One write per instance per heartbeat, whatever the number of its tasks; the sweeper
(sweep.py) decides from these rows which instances are lost.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from taskstate.core.db import ACTIVE_VALUES, Database, iso_or_none, tasks, utcnow, workers
from taskstate.core.states import HELD_STATES
from taskstate.core.store import Store
from taskstate.core.writer import WriteBatch

HELD_VALUES = frozenset(s.value for s in HELD_STATES)


async def register(
    store: Store, worker_id: str, *, host: str, pid: int, version: str, slots: int | None = None
) -> None:
    """Write this instance's row (again); `slots`: how many jobs it runs at once."""
    now = utcnow()
    values = {
        "slots": slots,
        "id": worker_id,
        "host": host,
        "pid": pid,
        "version": version,
        "started_at": now,
        "heartbeat_at": now,
        "state": "running",
    }

    async def op(wb: WriteBatch) -> None:
        await wb.conn.execute(sa.delete(workers).where(workers.c.id == worker_id))
        await wb.conn.execute(workers.insert().values(**values))

    await store.write(op)


async def heartbeat(store: Store, worker_id: str) -> bool:
    """Say this worker is alive, and `running` again if a peer had marked it lost (it
    stalled: a long pause, a stopped VM). False if its row is gone (forgotten after a
    day as lost): the caller registers again."""

    async def op(wb: WriteBatch) -> bool:
        beat = (
            sa.update(workers)
            .where(workers.c.id == worker_id)
            .values(heartbeat_at=utcnow(), state="running")
            .returning(workers.c.id)
        )
        return (await wb.conn.execute(beat)).first() is not None

    return await store.write(op)


async def set_state(store: Store, worker_id: str, state: str) -> None:
    async def op(wb: WriteBatch) -> None:
        await wb.conn.execute(
            sa.update(workers).where(workers.c.id == worker_id).values(state=state, heartbeat_at=utcnow())
        )

    await store.write(op)


async def list_workers(db: Database, *, orphan_after: float) -> list[dict[str, Any]]:
    async with db.reader.connect() as conn:
        rows = (
            (await conn.execute(sa.select(workers).order_by(workers.c.started_at.desc()).limit(200)))
            .mappings()
            .all()
        )
        held = (
            await conn.execute(
                sa.select(tasks.c.worker_id, tasks.c.id, tasks.c.state, tasks.c.waiting_for)
                .where(tasks.c.state.in_(ACTIVE_VALUES), tasks.c.worker_id.is_not(None))
                .order_by(tasks.c.created_at)
            )
        ).all()
    by_worker: dict[str, list[str]] = {}
    in_slots: dict[str, int] = {}
    for worker_id, task_id, task_state, waiting_for in held:
        by_worker.setdefault(worker_id, []).append(task_id)
        # A job waiting for its children gives its slot up meanwhile (runtime/supervisor.py).
        if task_state in HELD_VALUES and not waiting_for:
            in_slots[worker_id] = in_slots.get(worker_id, 0) + 1
    now = utcnow()
    result = []
    for row in rows:
        age = (now - row["heartbeat_at"]).total_seconds()
        state = row["state"]
        if state == "running" and age > orphan_after:
            state = "lost"
        result.append(
            {
                "id": row["id"],
                "host": row["host"],
                "pid": row["pid"],
                "version": row["version"],
                "started_at": iso_or_none(row["started_at"]),
                "heartbeat_at": iso_or_none(row["heartbeat_at"]),
                "heartbeat_age_seconds": round(age, 3),
                "state": state,
                "tasks": by_worker.get(row["id"], []),
                "slots": row["slots"],
                "slots_used": in_slots.get(row["id"], 0) if state == "running" else 0,
            }
        )
    return result
