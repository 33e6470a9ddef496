"""What a restored run finds of the runs before it: `ctx.restoration` (CONTRACT §6).

Read once, before the run goes on: how often and why the task was restored, the state
its worker lost it in, its checkpoint, its pending questions, and the children it had
spawned (with those still open), so that a job (or its `validate` hook) can decide how
to go on instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from taskstate.core.db import tasks, transitions
from taskstate.core.states import State, is_terminal
from taskstate.core.store import Store
from taskstate.runtime.children import CHILD_KEY_PREFIX
from taskstate.runtime.context import ChildHandle, Restoration


async def restoration_of(store: Store, row: Mapping[str, Any]) -> Restoration:
    task_id = row["id"]
    warnings: list[str] = []
    checkpoint = None
    if row["checkpoint"] is not None:
        try:
            checkpoint = json.loads(row["checkpoint"])
        except ValueError as exc:
            warnings.append(f"restored without its checkpoint, which is unreadable ({exc})")
    children_query = (
        sa.select(tasks.c.id, tasks.c.type, tasks.c.state, tasks.c.idempotency_key)
        .where(tasks.c.parent_id == task_id)
        .order_by(tasks.c.created_at)
    )
    lost_query = (
        sa.select(transitions.c.from_state)
        .where(transitions.c.task_id == task_id, transitions.c.to_state == State.ORPHANED.value)
        .order_by(transitions.c.seq.desc())
        .limit(1)
    )
    async with store.db.reader.connect() as conn:
        children = (await conn.execute(children_query)).all()
        lost_in = (await conn.execute(lost_query)).scalar_one_or_none()
    prefix = f"{CHILD_KEY_PREFIX}{task_id}:"
    handles = [
        ChildHandle(child.id, (child.idempotency_key or "").removeprefix(prefix), child.type)
        for child in children
    ]
    return Restoration(
        count=row["restoration_count"],
        source=row["restoration_source"],
        lost_in=lost_in,
        checkpoint=checkpoint,
        pending_questions=list(row["pending_questions"] or []),
        children=handles,
        open_children=[child.id for child in children if not is_terminal(child.state)],
        warnings=warnings,
    )
