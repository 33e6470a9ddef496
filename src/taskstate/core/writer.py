"""Group commit: every write of the store goes through one writer per instance.

Writes queue up while the previous transaction commits, then run together in
one transaction, each op in the order it arrived. Transition rows get their
`seq` at the very end of the transaction, from a one-row counter whose row
lock is held until commit, so on PostgreSQL too `seq` order is commit order:
a reader that has seen `seq = N` can never later find a committed row below
N that it did not see. Events are published only after the commit, in `seq`
order (through the store, to the feed: the one way into the bus). If a batch
fails, each op is retried in a transaction of its own, so one bad op fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskstate.core.bus import Event
from taskstate.core.db import is_closed, seq_counter, transitions
from taskstate.core.errors import TaskstateError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BATCH_OPS = 256
GATHER_TURNS = 4


@dataclass(slots=True)
class TransitionRecord:
    """A transition row waiting for its `seq`; `event` is built once the seq is known."""

    task_id: str
    from_state: str | None
    to_state: str
    at: datetime
    reason: str | None
    actor: str
    task: dict[str, Any]
    seq: int | None = None
    #: Whether this (terminal) transition counted a blocker off a dependent; None where
    #: not known (another instance's, read back): listeners must then assume it may have.
    unblocks: bool | None = None


@dataclass(slots=True)
class WriteBatch:
    """What an op sees: the open transaction, and where to put the transitions it made."""

    conn: AsyncConnection
    records: list[TransitionRecord] = field(default_factory=list)
    live_events: list[Event] = field(default_factory=list)

    def record(self, rec: TransitionRecord) -> None:
        self.records.append(rec)


Op = Callable[[WriteBatch], Awaitable[T]]


class GroupableOp:
    """An op that can also run together with its neighbours of the same kind.

    Consecutive ops of one subclass whose `key`s differ (different tasks) touch
    disjoint rows, so running them as one multi-row statement is the same as running
    them one after the other: the writer hands such a run to `run_group`, which
    answers one `(ok, value or refusal)` per op, in order. A single op is simply
    called.
    """

    __slots__ = ()

    @property
    def key(self) -> str:
        raise NotImplementedError

    async def __call__(self, wb: WriteBatch) -> Any:
        raise NotImplementedError

    @classmethod
    async def run_group(cls, wb: WriteBatch, ops: list[Any]) -> list[tuple[bool, Any]]:
        raise NotImplementedError


@dataclass(slots=True)
class _Pending(Generic[T]):
    op: Op[T]
    future: asyncio.Future[T]


class Writer:
    def __init__(
        self,
        engine: AsyncEngine,
        after_commit: Callable[[list[TransitionRecord], list[Event]], None],
        notify_channel: str | None = None,
        origin: str = "",
    ) -> None:
        self._engine = engine
        self._after_commit = after_commit
        self._notify_channel = notify_channel
        self._origin = origin
        #: Called with (ops, seconds) after each committed batch (metrics).
        self.on_batch: Callable[[int, float], None] | None = None
        self._queue: asyncio.Queue[_Pending[Any]] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self.batches = 0
        self.ops = 0
        #: Transactions that failed and were rolled back (their ops retried or failed).
        self.failed = 0

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="taskstate-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._runner is None:
            return
        await self._queue.join()
        self._runner.cancel()
        try:
            await self._runner
        except asyncio.CancelledError:
            pass
        self._runner = None
        await self._drop_connection()

    async def _connection(self) -> AsyncConnection:
        """The writer's own connection, kept between batches.

        A pool checkout per batch cost three round trips on PostgreSQL (the pre-ping is
        BEGIN, `;`, ROLLBACK) for about eight writes: the writer keeps its connection,
        and drops it after any failed transaction, so that a broken one is replaced by
        a checked one from the pool.
        """
        if self._conn is not None and is_closed((await self._conn.get_raw_connection()).dbapi_connection):
            await self._drop_connection()  # the server closed it while we were idle
        if self._conn is None:
            self._conn = await self._engine.connect()
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # already broken: the pool discards it
                log.debug("closing the writer's connection failed", exc_info=True)

    async def submit(self, op: Op[T]) -> T:
        if self._runner is None:
            raise RuntimeError("the store's writer is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(op, future))
        # Not shielded: a caller cancelled while it waits cancels only its future (the op
        # still runs, its outcome unheard), and an answer wakes the caller a turn sooner.
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            # Callers woken by the last commit are a few loop turns from submitting their
            # next write; letting them join makes batches as large as the concurrency.
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
            while len(batch) < MAX_BATCH_OPS and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._execute(batch)
            except Exception:  # never let the writer die: fail the batch instead
                log.exception("writer batch failed unexpectedly")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(RuntimeError("the store's writer failed"))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _execute(self, batch: list[_Pending[Any]]) -> None:
        try:
            await self._transaction(batch)
            return
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            log.warning("batch of %d writes failed (%s); retrying one by one", len(batch), exc)
        for pending in batch:
            try:
                await self._transaction([pending])
            except Exception as exc:
                if not pending.future.done():
                    pending.future.set_exception(exc)

    async def _transaction(self, batch: list[_Pending[Any]]) -> None:
        started = time.perf_counter()
        conn = await self._connection()
        try:
            async with conn.begin():
                wb = WriteBatch(conn)
                outcomes = await _run_ops(wb, batch)
                if wb.records:
                    await self._assign_seqs(conn, wb.records)
        except BaseException:
            self.failed += 1
            await self._drop_connection()
            raise
        self.batches += 1
        self.ops += len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - started)
        # Committed: only now may anyone hear of it.
        if wb.records or wb.live_events:
            self._after_commit(wb.records, wb.live_events)
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if ok:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(value)

    async def _assign_seqs(self, conn: AsyncConnection, records: list[TransitionRecord]) -> None:
        """Give the batch's transition rows their `seq`s (the counter's row lock is held until
        commit) and insert them; on PostgreSQL one statement does both and queues the NOTIFY
        that tells the other instances, delivered when (and only if) this commits."""
        if self._notify_channel is not None:
            params = {
                "b_n": len(records),
                "b_channel": self._notify_channel,
                "b_origin": self._origin,
                "b_task_ids": [rec.task_id for rec in records],
                "b_froms": [rec.from_state for rec in records],
                "b_tos": [rec.to_state for rec in records],
                "b_ats": [rec.at for rec in records],
                "b_reasons": [rec.reason for rec in records],
                "b_actors": [rec.actor for rec in records],
            }
            seqs = (await conn.execute(_NUMBER_AND_INSERT_TRANSITIONS, params)).scalars().all()
            first = min(seqs)
            for offset, rec in enumerate(records):
                rec.seq = first + offset
            return
        last = (await conn.execute(_BUMP_SEQ, {"b_n": len(records)})).scalar_one()
        first = last - len(records) + 1
        for offset, rec in enumerate(records):
            rec.seq = first + offset
        await conn.execute(
            _INSERT_TRANSITIONS,
            [
                {
                    "seq": rec.seq,
                    "task_id": rec.task_id,
                    "from_state": rec.from_state,
                    "to_state": rec.to_state,
                    "at": rec.at,
                    "reason": rec.reason,
                    "actor": rec.actor,
                }
                for rec in records
            ],
        )


async def _run_ops(wb: WriteBatch, batch: list[_Pending[Any]]) -> list[tuple[bool, Any]]:
    """Each op's `(ok, value or refusal)`, in order; runs of groupable ops go together."""
    outcomes: list[tuple[bool, Any]] = []
    for run in _runs(batch):
        head = run[0].op
        if len(run) > 1 and isinstance(head, GroupableOp):
            outcomes.extend(await type(head).run_group(wb, [pending.op for pending in run]))
            continue
        try:
            outcomes.append((True, await head(wb)))
        except TaskstateError as refusal:  # raised before the op wrote anything
            outcomes.append((False, refusal))
    return outcomes


def _runs(batch: list[_Pending[Any]]) -> list[list[_Pending[Any]]]:
    """Split a batch into runs: groupable neighbours of one kind on distinct keys, or single ops."""
    runs: list[list[_Pending[Any]]] = []
    keys: set[str] = set()
    for pending in batch:
        op = pending.op
        if isinstance(op, GroupableOp) and runs:
            head = runs[-1][0].op
            if type(head) is type(op) and op.key not in keys:
                runs[-1].append(pending)
                keys.add(op.key)
                continue
        runs.append([pending])
        keys = {op.key} if isinstance(op, GroupableOp) else set()
    return runs


_BUMP_SEQ = (
    sa.update(seq_counter)
    .where(seq_counter.c.id == 1)
    .values(value=seq_counter.c.value + sa.bindparam("b_n", type_=sa.BigInteger))
    .returning(seq_counter.c.value)
)
#: PostgreSQL: the seqs allocated, `{"o": origin, "t": [first, last]}` queued on the
#: channel, and the rows inserted (in the order of the arrays), in one round trip. The
#: NOTIFY is a CTE that only runs because the INSERT's SELECT reads it.
_NUMBER_AND_INSERT_TRANSITIONS = sa.text(
    """
    WITH counter AS (
        UPDATE seq_counter SET value = value + :b_n WHERE id = 1 RETURNING value
    ), notified AS (
        SELECT pg_notify(
            :b_channel,
            json_build_object('o', :b_origin, 't', json_build_array(value - :b_n + 1, value))::text
        ) FROM counter
    )
    INSERT INTO transitions (seq, task_id, from_state, to_state, at, reason, actor)
    SELECT counter.value - :b_n + r.ord, r.task_id, r.from_state, r.to_state, r.at, r.reason, r.actor
    FROM counter, (SELECT count(*) FROM notified) AS n,
        unnest(
            CAST(:b_task_ids AS text[]), CAST(:b_froms AS text[]), CAST(:b_tos AS text[]),
            CAST(:b_ats AS timestamptz[]), CAST(:b_reasons AS text[]), CAST(:b_actors AS text[])
        ) WITH ORDINALITY AS r(task_id, from_state, to_state, at, reason, actor, ord)
    RETURNING seq
    """
).bindparams(
    sa.bindparam("b_n", type_=sa.BigInteger),
    sa.bindparam("b_channel", type_=sa.Text),
    sa.bindparam("b_origin", type_=sa.Text),
)
_INSERT_TRANSITIONS = transitions.insert()
