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

from taskstate.core.db import tasks, utcnow
from taskstate.core.errors import IdempotencyConflict
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
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(slots=True)
class CreateResult:
    task: dict[str, Any]
    created: bool


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
    values = [_new_row(item, start + timedelta(microseconds=i)) for i, item in enumerate(fresh)]
    inserted: dict[str, Mapping[Any, Any]] = {}
    if values:
        rows = (await wb.conn.execute(_INSERT[wb.conn.dialect.name], values)).mappings().all()
        inserted = {row["id"]: row for row in rows}
    results = []
    for item in new:
        key = _key_of(item)
        row = inserted.get(item.id)
        if row is not None:
            payload = task_payload(row, row["created_at"])
            at = row["created_at"]
            wb.record(TransitionRecord(item.id, None, State.QUEUED.value, at, "created", actor, payload))
            results.append(CreateResult(payload, created=True))
            continue
        assert key is not None, "only a keyed task can be left out by ON CONFLICT"
        first = earlier.get(key) or await _by_key(wb.conn, key)
        if not _same_request(first, item):
            raise KeyRaced()
        results.append(CreateResult(task_payload(first, start), created=False))
    return results


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


def _new_row(new: NewTask, now: datetime) -> dict[str, Any]:
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
    }
