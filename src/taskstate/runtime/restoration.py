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
from taskstate.runtime.context import ChildHandle, Decision, JobContext, Restoration
from taskstate.runtime.registry import JobSpec


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


class RestorationRefused(Exception):
    """A person (or the job's validate hook) decided that a restored task fails."""


async def how_to_go_on(ctx: JobContext, spec: JobSpec, restoration: Restoration) -> dict[str, Any]:
    """How a restored run goes on, as the fields its `running` transition writes.

    The type and params were checked already (a mismatch fails the task). By default
    a run resumes from its checkpoint, or starts fresh, with a warning, when the
    checkpoint is unreadable; a job's `validate` hook may decide otherwise, or leave
    it to a person (`manual`: a question on the task).
    """
    ctx.restoration = restoration
    if restoration.warnings:
        ctx.message = restoration.warnings[0]
    if spec.validate is not None:
        decision = Decision(await spec.validate(ctx, restoration))
    elif restoration.checkpoint is not None:
        decision = Decision.CHECKPOINT
    else:
        decision = Decision.FRESH if restoration.warnings else Decision.PROCEED
    code = decision
    if decision is Decision.MANUAL:
        decision = await _ask_how_to_go_on(ctx, restoration)
    if decision is Decision.CHECKPOINT and restoration.checkpoint is not None:
        ctx.restored_checkpoint = restoration.checkpoint
    text = {
        Decision.PROCEED: "no checkpoint, starting from the beginning",
        Decision.CHECKPOINT: "from the last checkpoint",
        Decision.FRESH: restoration.warnings[0] if restoration.warnings else "starting over",
    }[decision]
    if code is Decision.MANUAL:
        text = f"a person chose: {text}"
    fields: dict[str, Any] = {"restoration_decision": f"{code.value}: {text}"}
    if restoration.warnings:
        fields["message"] = restoration.warnings[0]
    return fields


async def _ask_how_to_go_on(ctx: JobContext, restoration: Restoration) -> Decision:
    """`manual`: a person decides how the restored run goes on (or that it fails)."""
    choices = {"resume from the checkpoint": Decision.CHECKPOINT, "start fresh": Decision.FRESH}
    answer = await ctx.ask(
        f"This task was restored ({restoration.source}, lost in {restoration.lost_in}): how should it go on?",
        choices=[*choices, "fail"],
        context={
            "kind": "restoration",
            "count": restoration.count,
            "open_children": restoration.open_children,
        },
        key=f"restoration {restoration.count}",
    )
    if answer not in choices:
        raise RestorationRefused("a person chose to fail the restored task")
    return choices[answer]
