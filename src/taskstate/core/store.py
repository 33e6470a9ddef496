"""The store: the only code that writes tasks, and the canonical `transition()`.

Every state change goes through `_apply_transition`: it reads the task's
state, checks the table, updates the row *on the condition that the state is
still the one it read*, and records the transition row, all in the writer's
transaction (see writer.py for batching and `seq`). Expected refusals are
values (`Outcome.NOOP`, `Outcome.REFUSED`, `Outcome.NOT_OWNER`); illegal
requests raise `InvalidTransition`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from taskstate.core import sqlite_space
from taskstate.core.bus import Event, EventBus
from taskstate.core.db import (
    ACTIVE_VALUES,
    TERMINAL_VALUES,
    Database,
    iso,
    questions,
    seq_counter,
    task_logs,
    tasks,
    transitions,
    utcnow,
    workers,
)
from taskstate.core.errors import (
    IdempotencyConflict,
    InvalidTransition,
    NotFound,
    TaskstateError,
    ValidationFailed,
)
from taskstate.core.feed import TransitionFeed
from taskstate.core.states import HELD_STATES, State, can_transition, check_transition, is_terminal
from taskstate.core.writer import GroupableOp, TransitionRecord, WriteBatch, Writer

log = logging.getLogger(__name__)

#: The PostgreSQL channel on which instances tell each other what they committed.
NOTIFY_CHANNEL = "taskstate"

T = TypeVar("T")

#: Columns a transition may set besides the state (anything else is a bug in the caller).
TRANSITION_FIELDS = frozenset(
    {
        "worker_id",
        "heartbeat_at",
        "result",
        "error",
        "error_type",
        "progress",
        "phase",
        "message",
        "attempt",
        "checkpoint",
        "checkpoint_at",
        "restoration_count",
        "last_restored_at",
        "restoration_source",
        "restoration_decision",
        "items_processed",
        "items_failed",
        "restore_pending",
        "endpoint",
        "service_info",
        "execution_summary",
        "phase_results",
        "system_info",
    }
)


class Outcome(StrEnum):
    APPLIED = "applied"  #: the state changed and a transition row was written
    NOOP = "noop"  #: the task was already in the requested state
    REFUSED = "refused"  #: the task is terminal; nothing changes (a late completion)
    NOT_OWNER = "not_owner"  #: the guard did not match: another worker or attempt holds it


@dataclass(frozen=True, slots=True)
class Guard:
    """Fencing for workers: apply only while this worker still holds this attempt."""

    worker_id: str
    attempt: int


@dataclass(slots=True)
class TransitionResult:
    outcome: Outcome
    from_state: str
    to_state: str
    task: dict[str, Any]
    record: TransitionRecord | None = None

    @property
    def applied(self) -> bool:
        return self.outcome is Outcome.APPLIED

    @property
    def seq(self) -> int | None:
        return self.record.seq if self.record else None


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


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    states: Sequence[str] = ()
    type: str | None = None
    trigger: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str | None = None
    owner: str | None = None


def _iso(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def task_payload(row: Mapping[Any, Any], now: datetime | None = None) -> dict[str, Any]:
    """A task row as the contract's JSON object (the shape of `TaskPublic`)."""
    started, finished = row["started_at"], row["finished_at"]
    if started is not None and finished is not None:
        duration: float | None = (finished - started).total_seconds()
    elif started is not None and not is_terminal(row["state"]):
        duration = ((now or utcnow()) - started).total_seconds()
    else:
        duration = None
    return {
        "id": row["id"],
        "type": row["type"],
        "name": row["name"],
        "state": row["state"],
        "is_terminal": is_terminal(row["state"]),
        "progress": row["progress"],
        "phase": row["phase"],
        "message": row["message"],
        "items_processed": row["items_processed"],
        "items_failed": row["items_failed"],
        "params": row["params"],
        "result": row["result"],
        "error": row["error"],
        "error_type": row["error_type"],
        "reason": row["last_reason"],
        "priority": row["priority"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "trigger": row["trigger"],
        "trigger_source": row["trigger_source"],
        "idempotency_key": row["idempotency_key"],
        "run_at": _iso(row["run_at"]),
        "timeout_seconds": row["timeout_seconds"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_seconds": duration,
        "worker_id": row["worker_id"],
        "heartbeat_at": _iso(row["heartbeat_at"]),
        "has_checkpoint": row["checkpoint"] is not None,
        "restoration_count": row["restoration_count"],
        "last_restored_at": _iso(row["last_restored_at"]),
        "restoration_source": row["restoration_source"],
        "restoration_decision": row["restoration_decision"],
        "pending_questions": row["pending_questions"] or [],
        "waiting_for_input": bool(row["pending_questions"]),
        "retry_of": row["retry_of"],
        "endpoint": row["endpoint"],
        "service_info": row["service_info"],
        "log_lines": row["log_seq"],
        "execution_summary": row["execution_summary"],
        "phase_results": row["phase_results"],
        "system_info": row["system_info"],
        "owner": row["owner"],
    }


def transition_event(rec: TransitionRecord) -> Event:
    return Event.of(
        {
            "type": "transition",
            "seq": rec.seq,
            "task_id": rec.task_id,
            "from": rec.from_state,
            "to": rec.to_state,
            "at": _iso(rec.at),
            "reason": rec.reason,
            "actor": rec.actor,
            "task": rec.task,
        }
    )


def transition_row_payload(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "task_id": row["task_id"],
        "from_state": row["from_state"],
        "to_state": row["to_state"],
        "at": _iso(row["at"]),
        "reason": row["reason"],
        "actor": row["actor"],
    }


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


class Store:
    """Reads and writes of tasks, transitions and workers."""

    def __init__(self, db: Database, bus: EventBus, *, instance_id: str | None = None) -> None:
        self.db = db
        self.bus = bus
        #: Names this instance in its NOTIFY payloads, so that it can skip its own.
        self.instance_id = instance_id or uuid.uuid4().hex
        self._analysed_at = -ANALYZE_AT_MOST_EVERY
        self._writer = Writer(
            db.writer,
            bus,
            self._committed_here,
            notify_channel=None if db.is_sqlite else NOTIFY_CHANNEL,
            origin=self.instance_id,
        )
        self._commit_listeners: list[Callable[[list[TransitionRecord]], None]] = []
        self._local_listeners: list[Callable[[list[TransitionRecord]], None]] = []
        self.feed = TransitionFeed(bus, transition_event, self._read_committed, self._notify_listeners)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, *, tail_seconds: float = 1.0) -> None:
        """Start the writer, and follow what other instances (or processes) commit."""
        self._writer.start()
        self.feed.start(tail_seconds)
        self.feed.request_catch_up()

    async def close(self) -> None:
        await self._writer.stop()
        await self.feed.close()

    def on_commit(self, listener: Callable[[list[TransitionRecord]], None]) -> None:
        """Call `listener` with committed transitions, this instance's at once, others' as read."""
        self._commit_listeners.append(listener)

    def on_local_commit(self, listener: Callable[[list[TransitionRecord]], None]) -> None:
        """Call `listener` with the transitions this instance commits (not other instances')."""
        self._local_listeners.append(listener)

    def on_batch_committed(self, listener: Callable[[int, float], None]) -> None:
        self._writer.on_batch = listener

    def _committed_here(self, records: list[TransitionRecord]) -> None:
        for listener in self._local_listeners:
            listener(records)
        self._notify_listeners(records)
        self.feed.local(records)

    def _notify_listeners(self, records: list[TransitionRecord]) -> None:
        for listener in self._commit_listeners:
            listener(records)

    async def _read_committed(self, after: int, limit: int) -> tuple[list[TransitionRecord], int]:
        async with self.db.reader.connect() as conn:
            committed = await _latest_seq(conn)
            if limit <= 0 or committed <= after:
                return [], committed
            records = await _records_since(conn, after, None, limit)
        return [r for r in records if r.seq is not None and r.seq <= committed], committed

    async def write(self, op: Callable[[WriteBatch], Awaitable[T]]) -> T:
        """Run `op` in the writer's next transaction (for writes that never change a state)."""
        return await self._writer.submit(op)

    @property
    def writer_stats(self) -> tuple[int, int]:
        return self._writer.batches, self._writer.ops

    @property
    def failed_write_transactions(self) -> int:
        return self._writer.failed

    # -- writes ----------------------------------------------------------------------------

    async def create_tasks(self, new: Sequence[NewTask], *, actor: str) -> list[CreateResult]:
        """Create tasks in one transaction, all or none.

        An idempotency key is the owner's own: the same key again, for the same type and
        params, answers the owner's first task (`created` false); for another type or
        other params it is an `IdempotencyConflict`, and nothing is created.
        """

        async def op(wb: WriteBatch) -> list[CreateResult]:
            if all(item.idempotency_key is None for item in new):
                if len(new) > 1:
                    return await _insert_tasks(wb, new, actor)
                earlier: dict[tuple[str, str], Mapping[Any, Any]] = {}
            else:
                earlier = await _check_idempotency(wb.conn, new)
            return [await _apply_create(wb, item, actor, earlier) for item in new]

        try:
            return await self._writer.submit(op)
        except _KeyRaced:
            # Rolled back; this time the check sees the racing task and answers as it should.
            return await self._writer.submit(op)

    async def transition(
        self,
        task_id: str,
        to: State,
        *,
        reason: str | None,
        actor: str,
        guard: Guard | None = None,
        fields: Mapping[str, Any] | None = None,
        expect_from: State | None = None,
    ) -> TransitionResult:
        """Move a task to `to`, if the table allows it; the one way a task's state changes."""
        unknown = set(fields or ()) - TRANSITION_FIELDS
        if unknown:
            raise ValueError(f"transition() cannot set {sorted(unknown)}")

        op = _TransitionOp(task_id, to, reason, actor, guard, fields or {}, expect_from)
        return await self._writer.submit(op)

    async def claim(self, worker_id: str, limit: int) -> list[dict[str, Any]]:
        """Claim up to `limit` due queued tasks (priority, then age) for `worker_id`."""

        async def op(wb: WriteBatch) -> list[dict[str, Any]]:
            return await _apply_claim(wb, worker_id, limit, self.db.is_sqlite)

        return await self._writer.submit(op)

    async def cancel_active(self, *, reason: str, actor: str) -> list[TransitionResult]:
        """Emergency reset: every non-terminal task ends, `cancelled` where the table allows it."""

        async def op(wb: WriteBatch) -> list[TransitionResult]:
            ids = (
                (await wb.conn.execute(sa.select(tasks.c.id).where(tasks.c.state.in_(ACTIVE_VALUES))))
                .scalars()
                .all()
            )
            results = []
            for task_id in ids:
                state = (
                    await wb.conn.execute(sa.select(tasks.c.state).where(tasks.c.id == task_id))
                ).scalar_one_or_none()
                if state is None or is_terminal(state):
                    continue
                to = State.CANCELLED if can_transition(state, State.CANCELLED) else State.FAILED
                results.append(await _apply_transition(wb, task_id, to, reason, actor, None, {}))
            return results

        return await self._writer.submit(op)

    async def delete_finished_before(self, cutoff: datetime, *, batch_size: int = 100) -> int:
        """Delete terminal tasks finished before `cutoff`, with their rows, a batch per transaction;
        on SQLite, then give the freed pages back to the file system."""
        deleted = 0
        while True:

            async def op(wb: WriteBatch) -> int:
                ids = (
                    (
                        await wb.conn.execute(
                            sa.select(tasks.c.id)
                            .where(tasks.c.state.in_(TERMINAL_VALUES), tasks.c.finished_at < cutoff)
                            .limit(batch_size)
                        )
                    )
                    .scalars()
                    .all()
                )
                if ids:
                    for table in (transitions, questions, task_logs):
                        await wb.conn.execute(sa.delete(table).where(table.c.task_id.in_(ids)))
                    await wb.conn.execute(sa.delete(tasks).where(tasks.c.id.in_(ids)))
                return len(ids)

            count = await self._writer.submit(op)
            deleted += count
            if count < batch_size:
                break
        if deleted and self.db.is_sqlite:
            await sqlite_space.give_back_free_pages(self.db.writer)
        return deleted

    async def register_worker(self, worker_id: str, *, host: str, pid: int, version: str) -> None:
        now = utcnow()
        values = {
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

        await self._writer.submit(op)

    async def heartbeat(self, worker_id: str) -> bool:
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

        return await self._writer.submit(op)

    async def save_checkpoint(self, task_id: str, guard: Guard, data: str) -> bool:
        """Store a job's checkpoint (JSON text); False if the task is no longer this worker's."""
        now = utcnow()
        stmt = (
            sa.update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.worker_id == guard.worker_id,
                tasks.c.attempt == guard.attempt,
                tasks.c.state.not_in(TERMINAL_VALUES),
            )
            .values(checkpoint=data, checkpoint_at=now, heartbeat_at=now, updated_at=now)
            .returning(tasks.c.id)
        )

        async def op(wb: WriteBatch) -> bool:
            return (await wb.conn.execute(stmt)).first() is not None

        return await self._writer.submit(op)

    async def sweep(self, *, me: str, orphan_after: float, default_timeout: float) -> list[TransitionResult]:
        """Recover what lost workers held, and fail tasks stuck past their timeout.

        A held task whose worker's heartbeat is older than `orphan_after` goes
        `orphaned`, then `queued` (attempt + 1, to be restored) while it has
        attempts left, else `failed` (`attempts_exhausted`). Every step is
        guarded by the worker and attempt it read, so racing sweepers are harmless.
        """

        async def op(wb: WriteBatch) -> list[TransitionResult]:
            return await _apply_sweep(wb, me, orphan_after, default_timeout)

        return await self._writer.submit(op)

    async def list_workers(self, *, orphan_after: float) -> list[dict[str, Any]]:
        async with self.db.reader.connect() as conn:
            rows = (
                (await conn.execute(sa.select(workers).order_by(workers.c.started_at.desc()).limit(200)))
                .mappings()
                .all()
            )
            held = (
                await conn.execute(
                    sa.select(tasks.c.worker_id, tasks.c.id)
                    .where(tasks.c.state.in_(ACTIVE_VALUES), tasks.c.worker_id.is_not(None))
                    .order_by(tasks.c.created_at)
                )
            ).all()
        by_worker: dict[str, list[str]] = {}
        for worker_id, task_id in held:
            by_worker.setdefault(worker_id, []).append(task_id)
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
                    "started_at": _iso(row["started_at"]),
                    "heartbeat_at": _iso(row["heartbeat_at"]),
                    "heartbeat_age_seconds": round(age, 3),
                    "state": state,
                    "tasks": by_worker.get(row["id"], []),
                }
            )
        return result

    async def count_stuck(self, default_timeout: float) -> int:
        """Held tasks whose last sign of life is older than their timeout."""
        async with self.db.reader.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(tasks.c.heartbeat_at, tasks.c.timeout_seconds).where(
                        tasks.c.state.in_(_WATCHED)
                    )
                )
            ).all()
        now = utcnow()
        return sum(
            1
            for beat, timeout in rows
            if beat is not None and (now - beat).total_seconds() > (timeout or default_timeout)
        )

    async def set_worker_state(self, worker_id: str, state: str) -> None:
        async def op(wb: WriteBatch) -> None:
            await wb.conn.execute(
                sa.update(workers).where(workers.c.id == worker_id).values(state=state, heartbeat_at=utcnow())
            )

        await self._writer.submit(op)

    # -- reads -----------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> dict[str, Any]:
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).mappings().first()
        if row is None:
            raise NotFound(f"no task with id {task_id!r}")
        return task_payload(row)

    async def get_task_row(self, task_id: str) -> Mapping[Any, Any] | None:
        async with self.db.reader.connect() as conn:
            return (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).mappings().first()

    async def active_tasks(self, owner: str | None = None) -> list[dict[str, Any]]:
        async with self.db.reader.connect() as conn:
            return await _active(conn, owner)

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

    async def list_tasks(
        self, flt: HistoryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        conditions: list[sa.ColumnElement[bool]] = []
        if flt.states:
            conditions.append(tasks.c.state.in_(list(flt.states)))
        if flt.type:
            conditions.append(tasks.c.type == flt.type)
        if flt.trigger:
            conditions.append(tasks.c.trigger == flt.trigger)
        if flt.created_after:
            conditions.append(tasks.c.created_at >= flt.created_after)
        if flt.created_before:
            conditions.append(tasks.c.created_at < flt.created_before)
        if flt.q:
            conditions.append(tasks.c.name.icontains(flt.q, autoescape=True))
        if flt.owner is not None:
            conditions.append(tasks.c.owner == flt.owner)
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
        count = sa.select(sa.func.count()).select_from(tasks).where(*conditions)

        async def read(query: sa.Select[Any]) -> Sequence[Any]:
            async with self.db.reader.connect() as conn:
                found: Sequence[Any] = (await conn.execute(query)).all()
                return found

        # `total` is counted on every page (tasks come and go while a client pages), so
        # the page and the count run side by side, on two connections.
        rows, counted = await asyncio.gather(read(page), read(count))
        total = int(counted[0][0])
        now = utcnow()
        items = [task_payload(r._mapping, now) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]._mapping
            next_cursor = encode_cursor(last["created_at"], last["id"])
        return items, next_cursor, total

    async def transitions_of(self, task_id: str) -> list[dict[str, Any]]:
        async with self.db.reader.connect() as conn:
            exists = (await conn.execute(sa.select(tasks.c.id).where(tasks.c.id == task_id))).first()
            if exists is None:
                raise NotFound(f"no task with id {task_id!r}")
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
        self, since: int, *, task_id: str | None = None, limit: int = 500
    ) -> list[Event]:
        """Replay: committed transitions with `seq > since`, oldest first, as events.

        `task` in each is the task as it is now; the transition itself is as it was.
        """
        async with self.db.reader.connect() as conn:
            records = await _records_since(conn, since, task_id, limit)
        return [transition_event(rec) for rec in records]

    async def refresh_statistics(self) -> bool:
        """ANALYZE `tasks` on PostgreSQL when it changed by more than its own size since
        the last ANALYZE (autovacuum's or ours), and by at least 1,000 rows.

        A young or fast-churning tasks table is exactly what autovacuum (10% of the table,
        checked once a minute) leaves unanalysed longest, and without statistics the
        planner scanned the whole table for a claim or a grouped transition: 18% fewer
        tasks/s on a new table of 3,000. Returns whether it analysed.
        """
        now = time.monotonic()
        if self.db.is_sqlite or now - self._analysed_at < ANALYZE_AT_MOST_EVERY:
            return False
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(_TASKS_STATISTICS)).first()
            if row is None or row.changed < max(ANALYZE_AFTER_CHANGES, row.live):
                return False
            await conn.execute(sa.text("ANALYZE tasks"))
        self._analysed_at = now
        return True

    async def ping(self) -> None:
        async with self.db.reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))


async def _records_since(
    conn: AsyncConnection, since: int, task_id: str | None, limit: int
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


async def _active(conn: AsyncConnection, owner: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(tasks).where(tasks.c.state.in_(ACTIVE_VALUES)).order_by(tasks.c.created_at)
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    rows = (await conn.execute(query)).mappings().all()
    now = utcnow()
    return [task_payload(r, now) for r in rows]


def _new_task_row(new: NewTask, now: datetime) -> dict[str, Any]:
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


_INSERT_TASKS = sa.insert(tasks).returning(*tasks.c, sort_by_parameter_order=True)


async def _insert_tasks(wb: WriteBatch, new: Sequence[NewTask], actor: str) -> list[CreateResult]:
    """Tasks without idempotency keys: one multi-row INSERT (SQLAlchemy's insertmanyvalues).

    Each task is a microsecond younger than the one before, as if created one by one, so
    that history (newest first) keeps the request's order.
    """
    start = utcnow()
    values = [_new_task_row(item, start + timedelta(microseconds=i)) for i, item in enumerate(new)]
    rows = (await wb.conn.execute(_INSERT_TASKS, values)).mappings().all()
    results = []
    for row in rows:
        now = row["created_at"]
        payload = task_payload(row, now)
        wb.record(TransitionRecord(row["id"], None, State.QUEUED.value, now, "created", actor, payload))
        results.append(CreateResult(payload, created=True))
    return results


class _KeyRaced(Exception):
    """Another request committed a task with this key, for another type or other params,
    after this one's check: the transaction must roll back (a refusal may not follow writes)."""


def _key_of(item: NewTask) -> tuple[str, str] | None:
    """The idempotency key as the unique index sees it: NULL owners are one owner."""
    return None if item.idempotency_key is None else (item.owner or "", item.idempotency_key)


def _same_request(row: Mapping[Any, Any], item: NewTask) -> bool:
    return bool(row["type"] == item.type and row["params"] == item.params)


def _key_conflict(row: Mapping[Any, Any], item: NewTask, index: int) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"idempotency_key {item.idempotency_key!r} was already used for task {row['id']} "
        f"(type {row['type']!r}) with another type or other params; "
        "a different request needs a new key",
        index=index,
        task_id=row["id"],
    )


async def _check_idempotency(
    conn: AsyncConnection, new: Sequence[NewTask]
) -> dict[tuple[str, str], Mapping[Any, Any]]:
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
            raise _key_conflict(first, item, index)
    return earlier


async def _apply_create(
    wb: WriteBatch, new: NewTask, actor: str, earlier: Mapping[tuple[str, str], Mapping[Any, Any]]
) -> CreateResult:
    now = utcnow()
    key = _key_of(new)
    if key is not None and key in earlier:
        return CreateResult(task_payload(earlier[key], now), created=False)
    values = _new_task_row(new, now)
    dialect = wb.conn.dialect.name
    insert = postgresql.insert(tasks) if dialect == "postgresql" else sqlite.insert(tasks)
    stmt = insert.values(**values)
    if key is not None:
        # No conflict target: the id is new, so only the per-owner key index can conflict
        # (an expression index, which both engines would have to infer from a copy of it).
        stmt = stmt.on_conflict_do_nothing()
    row = (await wb.conn.execute(stmt.returning(*tasks.c))).mappings().first()
    if row is None:
        assert key is not None
        existing = (
            (
                await wb.conn.execute(
                    sa.select(tasks).where(
                        tasks.c.idempotency_key == key[1],
                        sa.func.coalesce(tasks.c.owner, sa.literal_column("''")) == key[0],
                    )
                )
            )
            .mappings()
            .one()
        )
        if not _same_request(existing, new):
            raise _KeyRaced()
        return CreateResult(task_payload(existing, now), created=False)
    payload = task_payload(row, now)
    wb.record(TransitionRecord(new.id, None, State.QUEUED.value, now, "created", actor, payload))
    return CreateResult(payload, created=True)


async def _apply_transition(
    wb: WriteBatch,
    task_id: str,
    to: State,
    reason: str | None,
    actor: str,
    guard: Guard | None,
    fields: Mapping[str, Any],
    expect_from: State | None = None,
) -> TransitionResult:
    """The canonical transition (see the module docstring).

    `expect_from` is a caller's belief about the current state (a worker knows the state
    it put its task in): it lets the conditional update go first, without the read; if the
    belief was wrong, nothing was written and the careful path below decides.
    """
    conn = wb.conn
    hint = expect_from.value if expect_from is not None and can_transition(expect_from, to) else None
    while True:
        if hint is not None:
            from_state, hint = hint, None
        else:
            current = (
                await conn.execute(
                    sa.select(tasks.c.state, tasks.c.worker_id, tasks.c.attempt).where(tasks.c.id == task_id)
                )
            ).first()
            if current is None:
                raise NotFound(f"no task with id {task_id!r}")
            from_state = current.state
            if guard is not None and (
                current.worker_id != guard.worker_id or current.attempt != guard.attempt
            ):
                return TransitionResult(Outcome.NOT_OWNER, from_state, to.value, {})
            if from_state == to.value:
                return TransitionResult(Outcome.NOOP, from_state, to.value, {})
            if is_terminal(from_state):
                log.info(
                    "ignored %s -> %s for task %s (%s): the task is already terminal",
                    from_state,
                    to.value,
                    task_id,
                    actor,
                )
                return TransitionResult(Outcome.REFUSED, from_state, to.value, {})
            check_transition(from_state, to.value)
        now = utcnow()
        params = {f"f_{name}": value for name, value in fields.items()}
        params.update(b_id=task_id, b_from=from_state, b_to=to.value, b_now=now, b_reason=reason)
        if guard is not None:
            params.update(b_worker=guard.worker_id, b_attempt=guard.attempt)
        stmt = _transition_statement(to, frozenset(fields), guard is not None)
        row = (await conn.execute(stmt, params)).mappings().first()
        if row is None:
            continue  # changed under us: read again and decide again
        if is_terminal(to.value):
            await conn.execute(
                _EXPIRE_QUESTIONS, {"b_ids": [task_id], "b_now": now, "b_by": f"task {to.value}"}
            )
        rec = TransitionRecord(task_id, from_state, to.value, now, reason, actor, task_payload(row, now))
        wb.record(rec)
        return TransitionResult(Outcome.APPLIED, from_state, to.value, rec.task, rec)


@dataclass(slots=True)
class _TransitionOp(GroupableOp):
    """`Store.transition()` as an op: alone it is `_apply_transition`; with neighbours,
    the ones whose caller knows the current state share one UPDATE per kind."""

    task_id: str
    to: State
    reason: str | None
    actor: str
    guard: Guard | None
    fields: Mapping[str, Any]
    expect_from: State | None

    @property
    def key(self) -> str:
        return self.task_id

    async def __call__(self, wb: WriteBatch, *, hint: bool = True) -> TransitionResult:
        expect_from = self.expect_from if hint else None
        return await _apply_transition(
            wb, self.task_id, self.to, self.reason, self.actor, self.guard, self.fields, expect_from
        )

    @classmethod
    async def run_group(cls, wb: WriteBatch, ops: list[Any]) -> list[tuple[bool, Any]]:
        return await _apply_transitions(wb, ops)


async def _apply_transitions(wb: WriteBatch, ops: list[_TransitionOp]) -> list[tuple[bool, Any]]:
    """Several transitions of distinct tasks, as one conditional UPDATE per kind.

    Only ops with a valid `expect_from` are grouped; a row the UPDATE did not return
    (the caller's belief was wrong) and every other op go the careful way, one by one.
    """
    outcomes: list[tuple[bool, Any] | None] = [None] * len(ops)
    kinds: dict[tuple[State, frozenset[str], bool], list[int]] = {}
    for i, op in enumerate(ops):
        if op.expect_from is not None and can_transition(op.expect_from, op.to):
            kinds.setdefault((op.to, frozenset(op.fields), op.guard is not None), []).append(i)
    retry_without_hint: set[int] = set()
    finished: dict[str, list[str]] = {}
    now = utcnow()
    for (to, names, guarded), members in kinds.items():
        if len(members) == 1:
            continue  # the single statement is cached; a one-row group would compile anew
        params: dict[str, Any] = {}
        for row_no, i in enumerate(members):
            op = ops[i]
            assert op.expect_from is not None
            row: dict[str, Any] = {"b_id": op.task_id, "b_from": op.expect_from.value, "b_reason": op.reason}
            if op.guard is not None:
                row.update(b_worker=op.guard.worker_id, b_attempt=op.guard.attempt)
            row.update({f"f_{name}": value for name, value in op.fields.items()})
            params.update({f"r{row_no}_{name}": value for name, value in row.items()})
        params["b_to"], params["b_now"] = to.value, now
        stmt = _group_transition_statement(to, names, guarded, len(members))
        updated = {r["id"]: r for r in (await wb.conn.execute(stmt, params)).mappings()}
        for i in members:
            op = ops[i]
            task_row = updated.get(op.task_id)
            if task_row is None:
                retry_without_hint.add(i)
                continue
            assert op.expect_from is not None
            from_state = op.expect_from.value
            payload = task_payload(task_row, now)
            rec = TransitionRecord(op.task_id, from_state, to.value, now, op.reason, op.actor, payload)
            wb.record(rec)
            outcomes[i] = (True, TransitionResult(Outcome.APPLIED, from_state, to.value, payload, rec))
            if is_terminal(to.value):
                finished.setdefault(to.value, []).append(op.task_id)
    for state, task_ids in finished.items():
        await wb.conn.execute(_EXPIRE_QUESTIONS, {"b_ids": task_ids, "b_now": now, "b_by": f"task {state}"})
    for i, op in enumerate(ops):
        if outcomes[i] is None:
            try:
                outcomes[i] = (True, await op(wb, hint=i not in retry_without_hint))
            except TaskstateError as refusal:
                outcomes[i] = (False, refusal)
    return [outcome for outcome in outcomes if outcome is not None]


def _transition_values(to: State, fields: frozenset[str], now: Any, field_value: Any) -> dict[str, Any]:
    """The SET clause of a transition to `to` (see `_apply_transition`)."""
    values: dict[str, Any] = {}
    if to is State.PREPARING:
        values["started_at"] = sa.func.coalesce(tasks.c.started_at, now)
    if is_terminal(to.value):
        values["finished_at"] = now
        values["pending_questions"] = sa.null()
        if to is State.COMPLETED:
            values["progress"] = 100.0
    for name in sorted(fields):
        values[name] = field_value(name)
    return values


@functools.lru_cache(maxsize=256)
def _group_transition_statement(to: State, fields: frozenset[str], guarded: bool, rows: int) -> sa.Update:
    """`_transition_statement` for `rows` tasks at once: UPDATE … FROM a list of rows.

    The rows are `SELECT :a AS x, … UNION ALL SELECT …` in text, not `sa.values()`:
    SQLAlchemy cannot cache a VALUES construct and compiled it anew on every call (a
    tenth of the server's CPU), and SQLite takes no column names on a VALUES subquery.
    """
    columns = [
        sa.column("b_id", tasks.c.id.type),
        sa.column("b_from", tasks.c.state.type),
        sa.column("b_reason", tasks.c.last_reason.type),
    ]
    if guarded:
        columns += [
            sa.column("b_worker", tasks.c.worker_id.type),
            sa.column("b_attempt", tasks.c.attempt.type),
        ]
    columns += [sa.column(f"f_{name}", tasks.c[name].type) for name in sorted(fields)]
    names = [c.name for c in columns]
    selects = " UNION ALL ".join(
        "SELECT " + ", ".join(f":r{i}_{name} AS {name}" for name in names) for i in range(rows)
    )
    binds = [sa.bindparam(f"r{i}_{c.name}", type_=c.type) for i in range(rows) for c in columns]
    v = sa.text(selects).bindparams(*binds).columns(*columns).subquery("v")
    now = sa.bindparam("b_now", type_=tasks.c.updated_at.type)
    values: dict[str, Any] = {
        "state": sa.bindparam("b_to", type_=tasks.c.state.type),
        "updated_at": now,
        "last_reason": v.c.b_reason,
        **_transition_values(to, fields, now, lambda name: v.c[f"f_{name}"]),
    }
    where = [tasks.c.id == v.c.b_id, tasks.c.state == v.c.b_from]
    if guarded:
        where += [tasks.c.worker_id == v.c.b_worker, tasks.c.attempt == v.c.b_attempt]
    return sa.update(tasks).where(*where).values(**values).returning(*tasks.c)


@functools.cache
def _transition_statement(to: State, fields: frozenset[str], guarded: bool) -> sa.Update:
    """The conditional UPDATE of one kind of transition, built once.

    Built per (target state, fields set, guarded) with bind parameters only, so that
    SQLAlchemy neither rebuilds the statement nor recomputes its cache key per call: on
    the hot path that was a quarter of the server's CPU.
    """
    now = sa.bindparam("b_now", type_=tasks.c.updated_at.type)
    values: dict[str, Any] = {
        "state": sa.bindparam("b_to", type_=tasks.c.state.type),
        "updated_at": now,
        "last_reason": sa.bindparam("b_reason", type_=tasks.c.last_reason.type),
        **_transition_values(
            to, fields, now, lambda name: sa.bindparam(f"f_{name}", type_=tasks.c[name].type)
        ),
    }
    stmt = (
        sa.update(tasks)
        .where(tasks.c.id == sa.bindparam("b_id"), tasks.c.state == sa.bindparam("b_from"))
        .values(**values)
        .returning(*tasks.c)
    )
    if guarded:
        stmt = stmt.where(
            tasks.c.worker_id == sa.bindparam("b_worker"), tasks.c.attempt == sa.bindparam("b_attempt")
        )
    return stmt


_EXPIRE_QUESTIONS = (
    sa.update(questions)
    .where(questions.c.task_id.in_(sa.bindparam("b_ids", expanding=True)), questions.c.status == "pending")
    .values(
        status="expired",
        answered_at=sa.bindparam("b_now", type_=questions.c.answered_at.type),
        answered_by=sa.bindparam("b_by"),
    )
)


_b_now = sa.bindparam("b_now", type_=tasks.c.updated_at.type)
#: 'queued' as a literal, not a bind parameter: only then can a generic plan (what a prepared
#: statement gets after five runs) prove the partial queue index's predicate and use it.
_QUEUED = sa.literal_column("'queued'", tasks.c.state.type)
_CLAIM_CANDIDATES = (
    sa.select(tasks.c.id, tasks.c.restore_pending)
    .where(tasks.c.state == _QUEUED, tasks.c.run_at <= _b_now)
    .order_by(tasks.c.priority.desc(), tasks.c.created_at)
    .limit(sa.bindparam("b_limit", type_=sa.Integer))
)
_CLAIM_CANDIDATES_SKIP_LOCKED = _CLAIM_CANDIDATES.with_for_update(skip_locked=True)
#: Two statements rather than `UPDATE … WHERE id IN (SELECT … SKIP LOCKED)`: on a table
#: PostgreSQL has no statistics for yet, it planned that one as a scan of the whole table
#: (15,000 buffers a claim at 3,000 tasks); by an explicit list of ids it probes the key.
#: By id alone, so that the primary key is the only index to use: the candidates are still
#: queued, locked FOR UPDATE by this transaction (PostgreSQL) or read in this exclusive
#: one (SQLite, a single writer).
_CLAIM = (
    sa.update(tasks)
    .where(tasks.c.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(
        state=State.PREPARING.value,
        worker_id=sa.bindparam("b_worker"),
        heartbeat_at=_b_now,
        updated_at=_b_now,
        started_at=sa.func.coalesce(tasks.c.started_at, _b_now),
        last_reason="claimed",
        restore_pending=False,
        restoration_count=sa.case(
            (tasks.c.restore_pending, tasks.c.restoration_count + 1),
            else_=tasks.c.restoration_count,
        ),
        last_restored_at=sa.case((tasks.c.restore_pending, _b_now), else_=tasks.c.last_restored_at),
    )
    .returning(*tasks.c)
)


async def _apply_claim(wb: WriteBatch, worker_id: str, limit: int, is_sqlite: bool) -> list[dict[str, Any]]:
    now = utcnow()
    candidates = _CLAIM_CANDIDATES if is_sqlite else _CLAIM_CANDIDATES_SKIP_LOCKED
    found = (await wb.conn.execute(candidates, {"b_now": now, "b_limit": limit})).all()
    if not found:
        return []
    ids = [r.id for r in found]
    restoring = {r.id for r in found if r.restore_pending}
    params = {"b_ids": ids, "b_worker": worker_id, "b_now": now}
    rows = (await wb.conn.execute(_CLAIM, params)).mappings().all()
    claimed = sorted(rows, key=lambda r: (-r["priority"], r["created_at"]))
    actor = f"worker:{worker_id}"
    for row in claimed:
        wb.record(
            TransitionRecord(
                row["id"],
                State.QUEUED.value,
                State.PREPARING.value,
                now,
                "claimed",
                actor,
                task_payload(row, now),
            )
        )
    return [{**row, "restoring": row["id"] in restoring} for row in claimed]


ANALYZE_AFTER_CHANGES = 1_000
ANALYZE_AT_MOST_EVERY = 60.0  # seconds, per instance
_TASKS_STATISTICS = sa.text(
    "SELECT n_live_tup AS live, n_mod_since_analyze AS changed FROM pg_stat_user_tables "
    "WHERE relid = 'tasks'::regclass"
)

_HELD = tuple(sorted(s.value for s in HELD_STATES))
_WATCHED = (State.PREPARING.value, State.RUNNING.value, State.COLLECTING.value)
#: Workers gone this long, holding nothing, are forgotten.
FORGET_WORKERS_AFTER = timedelta(days=1)


async def _apply_sweep(
    wb: WriteBatch, me: str, orphan_after: float, default_timeout: float
) -> list[TransitionResult]:
    conn = wb.conn
    now = utcnow()
    cutoff = now - timedelta(seconds=orphan_after)
    await conn.execute(
        sa.update(workers)
        .where(workers.c.id != me, workers.c.heartbeat_at < cutoff, workers.c.state == "running")
        .values(state="lost")
    )
    # Live is a recent heartbeat, whatever a sweeper once concluded: a worker marked lost
    # that beats again (it stalled, then resumed) is live, and what it claims is its own.
    live = sa.select(workers.c.id).where(
        sa.or_(workers.c.id == me, sa.and_(workers.c.heartbeat_at >= cutoff, workers.c.state != "stopped"))
    )
    lost = (
        await conn.execute(
            sa.select(tasks.c.id, tasks.c.state, tasks.c.worker_id, tasks.c.attempt, tasks.c.max_attempts)
            .where(
                sa.or_(
                    sa.and_(
                        tasks.c.state.in_(_HELD),
                        sa.or_(tasks.c.worker_id.is_(None), tasks.c.worker_id.not_in(live)),
                    ),
                    # Orphaned and left there (a hand-back cut short): finish the job.
                    sa.and_(tasks.c.state == State.ORPHANED.value, tasks.c.updated_at < cutoff),
                )
            )
            .limit(500)
        )
    ).all()
    results: list[TransitionResult] = []
    for task_id, state, worker_id, attempt, max_attempts in lost:
        try:
            if state != State.ORPHANED.value:
                guard = Guard(worker_id, attempt) if worker_id is not None else None
                if not can_transition(state, State.ORPHANED):
                    results.append(
                        await _apply_transition(
                            wb,
                            task_id,
                            State.FAILED,
                            "worker_lost",
                            "sweeper",
                            guard,
                            {"error": "its worker was lost while stopping", "error_type": "WorkerLost"},
                        )
                    )
                    continue
                orphaned = await _apply_transition(
                    wb, task_id, State.ORPHANED, "worker_lost", "sweeper", guard, {}
                )
                results.append(orphaned)
                if not orphaned.applied:
                    continue
            if attempt < max_attempts:
                fields = {
                    "attempt": attempt + 1,
                    "worker_id": None,
                    "restoration_source": "worker_lost",
                    "restore_pending": True,
                }
                results.append(
                    await _apply_transition(wb, task_id, State.QUEUED, "worker_lost", "sweeper", None, fields)
                )
            else:
                fields = {
                    "error": f"its worker was lost on each of its {max_attempts} attempts",
                    "error_type": "WorkerLost",
                }
                results.append(
                    await _apply_transition(
                        wb, task_id, State.FAILED, "attempts_exhausted", "sweeper", None, fields
                    )
                )
        except InvalidTransition:
            continue  # it moved on under us: nothing to recover
    # Stuck: held by a live worker, but no sign of life for longer than the task's timeout.
    watched = (
        await conn.execute(
            sa.select(
                tasks.c.id, tasks.c.heartbeat_at, tasks.c.timeout_seconds, tasks.c.worker_id, tasks.c.attempt
            ).where(tasks.c.state.in_(_WATCHED), tasks.c.worker_id.in_(live))
        )
    ).all()
    for task_id, beat, timeout, worker_id, attempt in watched:
        limit = timeout or default_timeout
        # The worker's own timeout normally fires first; this catches a job that ignores it.
        if beat is None or (now - beat).total_seconds() <= limit + orphan_after:
            continue
        try:
            results.append(
                await _apply_transition(
                    wb,
                    task_id,
                    State.FAILED,
                    "timeout",
                    "sweeper",
                    Guard(worker_id, attempt),
                    {"error": f"no progress for more than {limit:g} s", "error_type": "TimeoutError"},
                )
            )
        except InvalidTransition:
            continue
    await conn.execute(
        sa.delete(workers).where(
            workers.c.heartbeat_at < now - FORGET_WORKERS_AFTER,
            workers.c.id.not_in(
                sa.select(tasks.c.worker_id).where(
                    tasks.c.worker_id.is_not(None), tasks.c.state.in_(ACTIVE_VALUES)
                )
            ),
        )
    )
    return results


def retention_cutoff(days: float) -> datetime:
    return utcnow() - timedelta(days=days)
