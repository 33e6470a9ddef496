"""Reading tasks: one task, the active ones, history with its cursor, transition rows, the
replay from a `seq`, and a task's log.

Reads never go through the writer: on SQLite they use the pool of reader connections
(a consistent WAL snapshot each), on PostgreSQL autocommit connections (one statement,
one snapshot), and a read that needs several statements to agree asks for one snapshot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles

from taskstate.core.bus import Event
from taskstate.core.db import ACTIVE_VALUES, Database, iso, seq_counter, task_logs, tasks, transitions, utcnow
from taskstate.core.errors import NotFound, ValidationFailed
from taskstate.core.payloads import task_payload, transition_event, transition_row_payload
from taskstate.core.writer import TransitionRecord

#: Up to this many matches a history page's `total` is exact. Above it, PostgreSQL answers
#: its planner's estimate, flagged `total_is_estimate`: an exact `count(*)` reads every
#: matching row (94 ms at 1,000,000 tasks, 167 ms filtered), on every page. SQLite has
#: no estimate and counts.
EXACT_TOTAL_LIMIT = 10_000


class Explain(sa.sql.expression.Executable, sa.sql.expression.ClauseElement):
    """`EXPLAIN (FORMAT JSON) <select>`, PostgreSQL only (SQLAlchemy's documented recipe
    for a statement it does not have: compiled by `_compile_explain` below)."""

    inherit_cache = False

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _compile_explain(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + str(compiler.process(element.statement, **kw))


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    #: How many tasks match, over all pages; PostgreSQL's estimate when `total_is_estimate`.
    total: int
    total_is_estimate: bool


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    states: Sequence[str] = ()
    type: str | None = None
    trigger: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str | None = None
    owner: str | None = None
    trigger_source: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    #: Only tasks whose id starts with this (lowercase hex, maybe with the UUID's hyphens).
    id_prefix: str | None = None


def encode_cursor(created_at: datetime, task_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), task_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_id = json.loads(raw)
        # Only what encode_cursor writes: an instant that fits in UTC, and a task id (a UUID).
        return datetime.fromisoformat(created).astimezone(UTC), str(uuid.UUID(task_id))
    except (ValueError, TypeError, AttributeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not one this server issued", field="cursor") from exc


def id_prefix_conditions(prefix: str) -> list[sa.ColumnElement[bool]]:
    """`id` starts with `prefix`, as a range of the primary key: `id >= prefix AND id < next`,
    where `next` is the prefix up to its last digit below f, that digit one higher (`1a2f` ->
    `1a3`).

    The bounds end in a hex digit (never a hyphen), so that the range holds in a collation
    that ignores hyphens too; the LIKE is exact in any collation, on the range's few rows.
    """
    stem = prefix.rstrip("-")
    conditions = [tasks.c.id.startswith(prefix, autoescape=True), tasks.c.id >= stem]
    digits = stem.rstrip("f-")  # `1a2f-f` -> `1a2`: the carry goes past f's and hyphens
    if digits:  # else every id from `stem` on is past it (`ffff…`)
        conditions.append(tasks.c.id < digits[:-1] + format(int(digits[-1], 16) + 1, "x"))
    return conditions


#: Built once: building a select of the task's 53 columns and its cache key cost about a
#: quarter of the CPU of reading one task (0.86 against 0.63 ms per read on PostgreSQL).
_TASK_BY_ID = sa.select(tasks).where(tasks.c.id == sa.bindparam("b_id"))


class TaskReads:
    """Every read of tasks and their rows, on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_task(self, task_id: str) -> dict[str, Any]:
        row = await self.get_task_row(task_id)
        if row is None:
            raise NotFound(f"no task with id {task_id!r}")
        return task_payload(row)

    async def get_task_row(self, task_id: str) -> Mapping[Any, Any] | None:
        async with self.db.reader.connect() as conn:
            return (await conn.execute(_TASK_BY_ID, {"b_id": task_id})).mappings().first()

    async def snapshot(self) -> tuple[int, list[dict[str, Any]]]:
        """The newest `seq` and the active tasks, read in one consistent snapshot."""
        engine = self.db.reader
        async with engine.connect() as conn:
            if not self.db.is_sqlite:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                seq = await _latest_seq(conn)
                items = await _active(conn)
        return seq, items

    async def latest_seq(self) -> int:
        async with self.db.reader.connect() as conn:
            return await _latest_seq(conn)

    async def list_tasks(self, flt: HistoryFilter, *, limit: int, cursor: str | None) -> HistoryPage:
        conditions: list[sa.ColumnElement[bool]] = []
        if flt.states:
            conditions.append(tasks.c.state.in_(list(flt.states)))
        if flt.type:
            conditions.append(tasks.c.type == flt.type)
        if flt.trigger:
            conditions.append(tasks.c.trigger == flt.trigger)
        if flt.trigger_source:
            conditions.append(tasks.c.trigger_source == flt.trigger_source)
        if flt.parent_id:
            conditions.append(tasks.c.parent_id == flt.parent_id)
        if flt.root_id:
            conditions.append(tasks.c.root_id == flt.root_id)
        if flt.created_after:
            conditions.append(tasks.c.created_at >= flt.created_after)
        if flt.created_before:
            conditions.append(tasks.c.created_at < flt.created_before)
        if flt.q:
            conditions.append(tasks.c.name.icontains(flt.q, autoescape=True))
        if flt.owner is not None:
            conditions.append(tasks.c.owner == flt.owner)
        if flt.id_prefix:
            conditions.extend(id_prefix_conditions(flt.id_prefix))
        after: list[sa.ColumnElement[bool]] = []
        if cursor:
            created, last_id = decode_cursor(cursor)
            # A row value: one range on the (created_at DESC, id DESC) indexes.
            start = sa.tuple_(
                sa.literal(created, tasks.c.created_at.type), sa.literal(last_id, tasks.c.id.type)
            )
            after.append(sa.tuple_(tasks.c.created_at, tasks.c.id) < start)
        newest_first = (tasks.c.created_at.desc(), tasks.c.id.desc())
        if len(flt.states) > 1:
            # One index range per state, merged: `state IN (...)` would sort every match.
            others = conditions[1:]
            parts = [
                sa.select(
                    sa.select(tasks)
                    .where(tasks.c.state == state, *others, *after)
                    .order_by(*newest_first)
                    .limit(limit + 1)
                    .subquery()
                )
                for state in dict.fromkeys(flt.states)
            ]
            merged = sa.union_all(*parts).subquery()
            page: sa.Select[Any] = (
                sa.select(merged).order_by(merged.c.created_at.desc(), merged.c.id.desc()).limit(limit + 1)
            )
        else:
            page = sa.select(tasks).where(*conditions, *after).order_by(*newest_first).limit(limit + 1)
        matching: sa.Select[Any] = sa.select(sa.literal_column("1")).select_from(tasks).where(*conditions)
        # SQLite has no estimate to fall back on: it counts every match. PostgreSQL counts up
        # to the limit, and above it answers its planner's estimate.
        counted_rows = matching if self.db.is_sqlite else matching.limit(EXACT_TOTAL_LIMIT + 1)
        count = sa.select(sa.func.count()).select_from(counted_rows.subquery())

        async def read(query: sa.Select[Any]) -> Sequence[Any]:
            async with self.db.reader.connect() as conn:
                found: Sequence[Any] = (await conn.execute(query)).all()
                return found

        # `total` is counted on every page (tasks come and go while a client pages), so
        # the page and the count run side by side, on two connections.
        rows, counted = await asyncio.gather(read(page), read(count))
        total, estimated = int(counted[0][0]), False
        if total > EXACT_TOTAL_LIMIT and not self.db.is_sqlite:
            total, estimated = max(total, await self._estimated_rows(matching)), True
        now = utcnow()
        items = [task_payload(r._mapping, now) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]._mapping
            next_cursor = encode_cursor(last["created_at"], last["id"])
        return HistoryPage(items, next_cursor, total, estimated)

    async def _estimated_rows(self, query: sa.Select[Any]) -> int:
        """PostgreSQL's planner estimate of how many rows `query` returns: a few
        microseconds of planning where an exact `count(*)` reads every matching row."""
        async with self.db.reader.connect() as conn:
            plan = (await conn.execute(Explain(query))).scalar_one()
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    async def transitions_of(self, task_id: str) -> list[dict[str, Any]]:
        """The task's transition rows, oldest first (none for a task that does not exist)."""
        async with self.db.reader.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(transitions)
                        .where(transitions.c.task_id == task_id)
                        .order_by(transitions.c.seq)
                    )
                )
                .mappings()
                .all()
            )
        return [transition_row_payload(r) for r in rows]

    async def transitions_since(
        self, since: int, *, task_id: str | None = None, root_id: str | None = None, limit: int = 500
    ) -> list[Event]:
        """Replay: committed transitions with `seq > since`, oldest first, as events.

        `task` in each is the task as it is now; the transition itself is as it was.
        """
        async with self.db.reader.connect() as conn:
            records = await _records_since(conn, since, task_id, limit, root_id)
        return [transition_event(rec) for rec in records]

    async def committed_since(self, after: int, limit: int) -> tuple[list[TransitionRecord], int]:
        async with self.db.reader.connect() as conn:
            committed = await _latest_seq(conn)
            if limit <= 0 or committed <= after:
                return [], committed
            records = await _records_since(conn, after, None, limit)
        return [r for r in records if r.seq is not None and r.seq <= committed], committed

    async def ping(self) -> None:
        async with self.db.reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def logs_of(self, task_id: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        """The task's log lines after line `after` (none for a task that does not exist)."""
        async with self.db.reader.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(task_logs)
                        .where(task_logs.c.task_id == task_id, task_logs.c.seq > after)
                        .order_by(task_logs.c.seq)
                        .limit(limit)
                    )
                )
                .mappings()
                .all()
            )
        return [
            {"seq": r["seq"], "at": iso(r["at"]), "level": r["level"], "message": r["message"]} for r in rows
        ]


async def _records_since(
    conn: AsyncConnection, since: int, task_id: str | None, limit: int, root_id: str | None = None
) -> list[TransitionRecord]:
    query = (
        sa.select(transitions, tasks)
        .select_from(transitions.outerjoin(tasks, tasks.c.id == transitions.c.task_id))
        .where(transitions.c.seq > since)
        .order_by(transitions.c.seq)
        .limit(limit)
    )
    if task_id is not None:
        query = query.where(transitions.c.task_id == task_id)
    if root_id is not None:
        query = query.where(tasks.c.root_id == root_id)
    rows = (await conn.execute(query)).all()
    now = utcnow()
    records = []
    n = len(transitions.c)
    for row in rows:
        t = row._mapping
        task_cols = dict(zip(tasks.c.keys(), row[n:], strict=True))
        records.append(
            TransitionRecord(
                task_id=t[transitions.c.task_id],
                from_state=t[transitions.c.from_state],
                to_state=t[transitions.c.to_state],
                at=t[transitions.c.at],
                reason=t[transitions.c.reason],
                actor=t[transitions.c.actor],
                task=task_payload(task_cols, now) if task_cols["id"] is not None else {},
                seq=t[transitions.c.seq],
            )
        )
    return records


async def _latest_seq(conn: AsyncConnection) -> int:
    value = (
        await conn.execute(sa.select(seq_counter.c.value).where(seq_counter.c.id == 1))
    ).scalar_one_or_none()
    return int(value or 0)


async def _active(conn: AsyncConnection) -> list[dict[str, Any]]:
    query = sa.select(tasks).where(tasks.c.state.in_(ACTIVE_VALUES)).order_by(tasks.c.created_at)
    rows = (await conn.execute(query)).mappings().all()
    now = utcnow()
    return [task_payload(r, now) for r in rows]
