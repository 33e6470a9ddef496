"""A job's children, from the job's side: spawned once, waited for without holding a slot.

A spawn is idempotent per (parent, key): the child's idempotency key is made of both,
so a parent restored after a crash that spawns again gets the children it spawned
before. A parent that waits gives its instance's slot back (ten parents waiting for
twenty children on an instance of ten slots would otherwise never let a child run),
learns of its children's ends from the commit listener (any instance's commits), with
a look at their rows now and then as the safety net, and takes a slot again before it
goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from taskstate.core.creation import NewTask
from taskstate.core.db import tasks
from taskstate.core.states import State
from taskstate.core.store import Guard, Store
from taskstate.runtime.context import ChildFailed, ChildHandle, JobCancelled, JobContext
from taskstate.runtime.durably import durably
from taskstate.runtime.registry import JobRegistry

#: A spawned child's idempotency key is "child:<parent id>:<spawn key>".
CHILD_KEY_PREFIX = "child:"
#: How often a waiting parent looks at its children's rows (their ends normally wake it).
LOOK_SECONDS = 1.0


class Slots(Protocol):
    """The instance's pool, as a waiting job sees it."""

    def release(self, task_id: str) -> None: ...

    async def reacquire(self, task_id: str) -> None: ...


class JobChildren:
    """The children of one attempt of one task."""

    def __init__(
        self,
        row: Any,
        guard: Guard,
        store: Store,
        registry: JobRegistry,
        slots: Slots,
        *,
        actor: str,
        max_params_bytes: int,
    ) -> None:
        self.task_id: str = row["id"]
        self.root_id: str = row["root_id"] or row["id"]
        self.owner: str | None = row["owner"]
        self.guard = guard
        self.store = store
        self.registry = registry
        self.slots = slots
        self.actor = actor
        self.max_params_bytes = max_params_bytes
        self._spawned = 0
        self._ended = asyncio.Event()

    def child_ended(self) -> None:
        """One of this task's children reached a terminal state (on any instance)."""
        self._ended.set()

    async def spawn(
        self,
        ctx: JobContext,
        task_type: str,
        params: dict[str, Any] | None,
        *,
        key: str | None = None,
        name: str | None = None,
        depends_on: Sequence[str] = (),
        requires_approval: bool = False,
    ) -> ChildHandle:
        self._spawned += 1
        key = key or f"spawn{self._spawned}"
        checked = self.registry.validate_params(task_type, params, self.max_params_bytes)
        child = NewTask(
            type=task_type,
            params=checked,
            name=name or task_type,
            trigger="api",
            trigger_source=f"task:{self.task_id}",
            idempotency_key=f"{CHILD_KEY_PREFIX}{self.task_id}:{key}",
            owner=self.owner,
            parent_id=self.task_id,
            root_id=self.root_id,
            depends_on=list(depends_on),
            requires_approval=requires_approval,
        )
        result = await durably(
            self.task_id,
            "spawning a child",
            lambda: self.store.spawn(self.task_id, self.guard, child, actor=self.actor),
        )
        if result is None:  # the task is no longer this attempt's
            ctx.cancelled.set()
            raise JobCancelled(self.task_id)
        return ChildHandle(result.task["id"], key, task_type)

    async def wait(
        self, ctx: JobContext, children: Sequence[ChildHandle], derive_progress: bool
    ) -> list[Any]:
        ids = [child.id for child in children]
        if not ids:
            return []
        self.slots.release(self.task_id)
        try:
            rows = await self._until_ended(ctx, ids, derive_progress)
        finally:
            ctx.waiting_for = []
            ctx.progress(ctx.progress_value)  # written with the next flush: no longer waiting
        # Only a job that goes on takes a slot again: one that is stopping (cancelled, or
        # its instance shutting down) ends without one, rather than wait for it.
        await self.slots.reacquire(self.task_id)
        for child_id in ids:
            row = rows[child_id]
            if row.state != State.COMPLETED:
                raise ChildFailed(child_id, row.state, row.error)
        return [rows[child_id].result for child_id in ids]

    async def _until_ended(self, ctx: JobContext, ids: list[str], derive_progress: bool) -> dict[str, Any]:
        query = sa.select(tasks.c.id, tasks.c.state, tasks.c.progress, tasks.c.result, tasks.c.error).where(
            tasks.c.id.in_(ids)
        )
        while True:
            self._ended.clear()
            rows = await durably(self.task_id, "reading its children", lambda: self._read(query))
            open_ids = [child_id for child_id in ids if child_id in rows and not _ended(rows[child_id].state)]
            missing = [child_id for child_id in ids if child_id not in rows]
            if missing:
                raise ChildFailed(missing[0], "deleted", "the child task no longer exists")
            if open_ids != ctx.waiting_for or derive_progress:
                ctx.waiting_for = open_ids
                if derive_progress:
                    done = sum(100.0 if _ended(r.state) else float(r.progress) for r in rows.values())
                    ctx.progress(done / len(ids))
                else:
                    ctx.progress(ctx.progress_value)
            if not open_ids:
                return rows
            ended = asyncio.ensure_future(self._ended.wait())
            cancelled = asyncio.ensure_future(ctx.cancelled.wait())
            try:
                await asyncio.wait(
                    {ended, cancelled}, timeout=LOOK_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                ended.cancel()
                cancelled.cancel()
            ctx.raise_if_cancelled()

    async def _read(self, query: sa.Select[Any]) -> dict[str, Any]:
        async with self.store.db.reader.connect() as conn:
            return {row.id: row for row in (await conn.execute(query)).all()}


def _ended(state: str) -> bool:
    return state in (State.COMPLETED, State.FAILED, State.CANCELLED)
