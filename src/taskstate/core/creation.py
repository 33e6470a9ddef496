"""The birth of tasks: one INSERT for a whole request, with its `null → queued` rows.

A task is born `queued` with a transition row like every other (CONTRACT §1). An
idempotency key is its owner's own: the same key again, for the same type and
params, answers the owner's first task (`created` false); for another type or
other params it is an `IdempotencyConflict`, raised before anything is written
(the writer commits whatever an op wrote before it refused).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from taskstate.core.db import iso_or_none, questions, task_dependencies, tasks, utcnow
from taskstate.core.errors import IdempotencyConflict, InvalidDependency
from taskstate.core.payloads import task_payload
from taskstate.core.states import State
from taskstate.core.writer import TransitionRecord, WriteBatch


@dataclass(slots=True)
class NewTask:
    """A validated request to create a task (params already checked against the type)."""

    type: str
    params: dict[str, Any]
    name: str
    priority: int = 0
    run_at: datetime | None = None
    timeout_seconds: float | None = None
    max_attempts: int = 3
    trigger: str = "api"
    trigger_source: str | None = None
    idempotency_key: str | None = None
    retry_of: str | None = None
    owner: str | None = None
    #: The task whose job spawned this one, and the top of its tree (CONTRACT §6).
    parent_id: str | None = None
    root_id: str | None = None
    #: Tasks that must complete before this one may be claimed (ids, validated by `create`).
    depends_on: list[str] = field(default_factory=list)
    #: Not claimed until a person approves it, through the question asked at its birth.
    requires_approval: bool = False
    #: `manual` for a retry a person asked for (CONTRACT §6).
    restoration_source: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(slots=True)
class CreateResult:
    task: dict[str, Any]
    created: bool
    #: A dependency that had failed or was cancelled before this task was born: the task
    #: cannot run, and the store cancels it at once (reason `dependency_failed`).
    doomed_by: str | None = None


#: The question a task that requires approval is born with (CONTRACT §6, approval gates).
APPROVAL_KEY = "approval"
APPROVAL_CHOICES = ("approve", "reject")


class KeyRaced(Exception):
    """Another request committed a task with this key, for another type or other params,
    after this one's check: the transaction must roll back and the request be asked again."""


def _inserts(dialect: str) -> sa.Insert:
    insert = postgresql.insert(tasks) if dialect == "postgresql" else sqlite.insert(tasks)
    # No conflict target: the ids are new, so only the per-owner key index can conflict
    # (an expression index, which both engines would have to infer from a copy of it).
    return insert.on_conflict_do_nothing().returning(*tasks.c)


#: Built once per engine: SQLAlchemy caches the compiled form by the construct.
_INSERT = {dialect: _inserts(dialect) for dialect in ("postgresql", "sqlite")}


async def create(wb: WriteBatch, new: Sequence[NewTask], actor: str) -> list[CreateResult]:
    """Create `new` in the writer's transaction, all or none, in the request's order.

    Each task is a microsecond younger than the one before, as if created one by one, so
    that history (newest first) keeps the request's order.
    """
    keyed = any(item.idempotency_key is not None for item in new)
    earlier = await _earlier(wb.conn, new) if keyed else {}
    start = utcnow()
    fresh = [item for item in new if _key_of(item) not in earlier]
    graph = await _dependencies(wb.conn, fresh) if any(item.depends_on for item in fresh) else {}
    approvals = {item.id: _approval_question(item, start) for item in fresh if item.requires_approval}
    values = [
        _new_row(item, start + timedelta(microseconds=i), graph.get(item.id), approvals.get(item.id))
        for i, item in enumerate(fresh)
    ]
    inserted: dict[str, Mapping[Any, Any]] = {}
    if values:
        rows = (await wb.conn.execute(_INSERT[wb.conn.dialect.name], values)).mappings().all()
        inserted = {row["id"]: row for row in rows}
    edges = [
        {"task_id": item.id, "depends_on": dep}
        for item in fresh
        if item.id in inserted
        for dep in dict.fromkeys(item.depends_on)
    ]
    if edges:
        await wb.conn.execute(task_dependencies.insert(), edges)
        depended_on = sorted({edge["depends_on"] for edge in edges})
        await wb.conn.execute(sa.update(tasks).where(tasks.c.id.in_(depended_on)).values(has_dependents=True))
    asked = [question for task_id, question in approvals.items() if task_id in inserted]
    if asked:
        await wb.conn.execute(questions.insert(), asked)
    results = []
    for item in new:
        key = _key_of(item)
        row = inserted.get(item.id)
        if row is not None:
            payload = task_payload(row, row["created_at"])
            at = row["created_at"]
            wb.record(TransitionRecord(item.id, None, State.QUEUED.value, at, "created", actor, payload))
            doomed = graph[item.id].doomed_by if item.id in graph else None
            results.append(CreateResult(payload, created=True, doomed_by=doomed))
            continue
        assert key is not None, "only a keyed task can be left out by ON CONFLICT"
        first = earlier.get(key) or await _by_key(wb.conn, key)
        if not _same_request(first, item):
            raise KeyRaced()
        results.append(CreateResult(task_payload(first, start), created=False))
    return results


@dataclass(slots=True)
class _Waits:
    """What one new task waits for at its birth."""

    blockers: int = 0
    doomed_by: str | None = None


async def _dependencies(conn: AsyncConnection, new: Sequence[NewTask]) -> dict[str, _Waits]:
    """Check every dependency of `new` and count what each task waits for.

    A dependency is a task of the same owner, earlier or in the same request; the graph
    has no cycle (only tasks of one request can form one: an earlier task cannot depend
    on a new one). Raises a 422 naming the offending task and its index in the request.
    """
    batch = {item.id: index for index, item in enumerate(new)}
    outside = {dep for item in new for dep in item.depends_on if dep not in batch}
    found: dict[str, Any] = {}
    if outside:
        query = sa.select(tasks.c.id, tasks.c.state, tasks.c.owner).where(tasks.c.id.in_(sorted(outside)))
        found = {row.id: row for row in (await conn.execute(query)).all()}
    waits: dict[str, _Waits] = {}
    for index, item in enumerate(new):
        wait = waits.setdefault(item.id, _Waits())
        for dep in dict.fromkeys(item.depends_on):
            if dep in batch:
                wait.blockers += 1
                continue
            row = found.get(dep)
            if row is None:
                raise _invalid(index, f"depends on task {dep}, which does not exist", dep)
            if row.owner != item.owner:
                raise _invalid(index, f"depends on task {dep}, which belongs to someone else", dep)
            if row.state == State.COMPLETED:
                continue
            if row.state in (State.FAILED, State.CANCELLED):
                wait.doomed_by = wait.doomed_by or dep
            else:
                wait.blockers += 1
    _refuse_cycles(new, batch)
    return waits


def _refuse_cycles(new: Sequence[NewTask], batch: Mapping[str, int]) -> None:
    """Depth-first over the request's own edges; a cycle is a 422 naming a task on it."""
    done: set[str] = set()
    for item in new:
        path: list[str] = []
        stack: list[tuple[str, bool]] = [(item.id, False)]
        on_path: set[str] = set()
        while stack:
            task_id, leaving = stack.pop()
            if leaving:
                on_path.discard(task_id)
                path.pop()
                done.add(task_id)
                continue
            if task_id in done:
                continue
            if task_id in on_path:
                cycle = f"its dependencies form a cycle through task {task_id}"
                raise _invalid(batch[task_id], cycle, task_id)
            on_path.add(task_id)
            path.append(task_id)
            stack.append((task_id, True))
            for dep in new[batch[task_id]].depends_on:
                if dep in batch and dep not in done:
                    stack.append((dep, False))


def _invalid(index: int, detail: str, task_id: str) -> InvalidDependency:
    return InvalidDependency(detail, index=index, task_id=task_id)


def _approval_question(item: NewTask, now: datetime) -> dict[str, Any]:
    """The question a task that requires approval is born with."""
    return {
        "id": str(uuid.uuid4()),
        "task_id": item.id,
        "key": APPROVAL_KEY,
        "question": f"Approve {item.name}?",
        "choices": list(APPROVAL_CHOICES),
        "context": {"kind": "approval", "type": item.type},
        "asked_at": now,
        "timeout_at": None,
        "default_answer": None,
        "status": "pending",
    }


def approval_payload(question: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": question["id"],
        "question": question["question"],
        "choices": question["choices"],
        "context": question["context"],
        "asked_at": iso_or_none(question["asked_at"]),
        "timeout_at": None,
    }


def _key_of(item: NewTask) -> tuple[str, str] | None:
    return None if item.idempotency_key is None else (item.owner or "", item.idempotency_key)


def _same_request(row: Mapping[Any, Any], item: NewTask) -> bool:
    return bool(row["type"] == item.type and row["params"] == item.params)


async def _by_key(conn: AsyncConnection, key: tuple[str, str]) -> Mapping[Any, Any]:
    owner, idempotency_key = key
    query = sa.select(tasks).where(
        tasks.c.idempotency_key == idempotency_key,
        sa.func.coalesce(tasks.c.owner, sa.literal_column("''")) == owner,
    )
    return (await conn.execute(query)).mappings().one()


async def _earlier(conn: AsyncConnection, new: Sequence[NewTask]) -> dict[tuple[str, str], Mapping[Any, Any]]:
    """The owners' earlier tasks for the keys in `new`; raises `IdempotencyConflict`, before
    anything is written, for a key reused (here or earlier) for another type or other params."""
    wanted = {key for key in map(_key_of, new) if key is not None}
    rows = (
        (await conn.execute(sa.select(tasks).where(tasks.c.idempotency_key.in_([k for _, k in wanted]))))
        .mappings()
        .all()
    )
    earlier: dict[tuple[str, str], Mapping[Any, Any]] = {}
    for row in rows:
        found = (row["owner"] or "", row["idempotency_key"])
        if found in wanted:
            earlier[found] = row
    first_here: dict[tuple[str, str], Mapping[Any, Any]] = {}
    for index, item in enumerate(new):
        key = _key_of(item)
        if key is None:
            continue
        first = earlier.get(key) or first_here.setdefault(
            key, {"id": item.id, "type": item.type, "params": item.params}
        )
        if not _same_request(first, item):
            raise IdempotencyConflict(
                f"idempotency_key {item.idempotency_key!r} was already used for task {first['id']} "
                f"(type {first['type']!r}) with another type or other params; "
                "a different request needs a new key",
                index=index,
                task_id=first["id"],
            )
    return earlier


def _new_row(
    new: NewTask, now: datetime, waits: _Waits | None, approval: Mapping[str, Any] | None
) -> dict[str, Any]:
    blockers = (waits.blockers if waits else 0) + (1 if new.requires_approval else 0)
    return {
        "id": new.id,
        "type": new.type,
        "name": new.name,
        "state": State.QUEUED.value,
        "progress": 0.0,
        "items_processed": 0,
        "items_failed": 0,
        "params": new.params,
        "priority": new.priority,
        "attempt": 1,
        "max_attempts": new.max_attempts,
        "trigger": new.trigger,
        "trigger_source": new.trigger_source,
        "idempotency_key": new.idempotency_key,
        "run_at": new.run_at or now,
        "timeout_seconds": new.timeout_seconds,
        "created_at": now,
        "updated_at": now,
        "restoration_count": 0,
        "retry_of": new.retry_of,
        "owner": new.owner,
        "last_reason": "created",
        "parent_id": new.parent_id,
        "root_id": new.root_id or new.id,
        "depends_on": list(dict.fromkeys(new.depends_on)) or None,
        "blockers": blockers,
        "requires_approval": new.requires_approval,
        "restoration_source": new.restoration_source,
        "pending_questions": [approval_payload(approval)] if approval else None,
    }
