"""The store: the gateway through which every task's state changes.

Every state change goes through `apply_transition`: it reads the task's state, checks
the table (states.py), updates the row *on the condition that the state is still the one
it read*, writes what entering the new state writes (`states.ON_ENTRY`), and records the
transition row, all in the writer's transaction (writer.py: batching and `seq`).
Expected refusals are values (`Outcome.NOOP`, `Outcome.REFUSED`, `Outcome.NOT_OWNER`);
illegal requests raise `InvalidTransition`. The birth of tasks (creation.py), the claim
and the emergency reset are transitions too, and go through the same check.

After a commit, the transitions and the live events of the transaction go to the feed,
the one way into the event bus (feed.py), and to the commit listeners.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import sqlalchemy as sa

from taskstate.core import claim, creation
from taskstate.core.bus import Event, EventBus
from taskstate.core.creation import CreateResult, NewTask
from taskstate.core.db import ACTIVE_VALUES, TERMINAL_VALUES, Database, task_dependencies, tasks, utcnow
from taskstate.core.errors import NotFound, TaskstateError
from taskstate.core.feed import TransitionFeed
from taskstate.core.payloads import task_payload, transition_event
from taskstate.core.reads import TaskReads
from taskstate.core.statements import (
    EXPIRE_QUESTIONS,
    check_transition,
    group_transition_statement,
    transition_statement,
)
from taskstate.core.states import RESET_TO, State, can_transition, is_terminal, on_entry
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
        "traceback",
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


@dataclass(frozen=True, slots=True)
class Step:
    """A transition that follows another in the same transaction (see `Store.transition`)."""

    to: State
    reason: str
    fields: Mapping[str, Any]


@dataclass(slots=True)
class TransitionResult:
    outcome: Outcome
    from_state: str
    to_state: str
    task: dict[str, Any]
    record: TransitionRecord | None = None
    #: The results of the follow-up steps that were applied after this one, in order.
    then: list[TransitionResult] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return self.outcome is Outcome.APPLIED

    @property
    def seq(self) -> int | None:
        return self.record.seq if self.record else None


class Store:
    """The writes that change tasks, and where their commits go."""

    def __init__(self, db: Database, bus: EventBus, *, instance_id: str | None = None) -> None:
        self.db = db
        self.bus = bus
        self.reads = TaskReads(db)
        #: Names this instance in its NOTIFY payloads, so that it can skip its own.
        self.instance_id = instance_id or uuid.uuid4().hex
        self._writer = Writer(
            db.writer,
            self._committed_here,
            notify_channel=None if db.is_sqlite else NOTIFY_CHANNEL,
            origin=self.instance_id,
        )
        self._commit_listeners: list[Callable[[list[TransitionRecord]], None]] = []
        self._local_listeners: list[Callable[[list[TransitionRecord]], None]] = []
        self._creating_listeners: list[Callable[[], None]] = []
        self.feed = TransitionFeed(bus, transition_event, self.reads.committed_since, self._notify_listeners)

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

    def on_creating(self, listener: Callable[[], None]) -> None:
        """Call `listener` just before a creation is queued (a claim queued then joins it)."""
        self._creating_listeners.append(listener)

    async def _submit_creation(self, op: Callable[[WriteBatch], Awaitable[T]]) -> T:
        """A creation that lost the race for its key was rolled back: the retry sees the winner."""
        for listener in self._creating_listeners:
            listener()
        try:
            return await self._writer.submit(op)
        except creation.KeyRaced:
            return await self._writer.submit(op)

    def on_batch_committed(self, listener: Callable[[int, float], None]) -> None:
        self._writer.on_batch = listener

    def publish(self, event: Event) -> None:
        """A live event of this instance's (a job's progress or log line): through the feed,
        like every event, to the bus and the other instances."""
        self.feed.live([event])

    def _committed_here(self, records: list[TransitionRecord], live: list[Event]) -> None:
        for listener in self._local_listeners:
            listener(records)
        self._notify_listeners(records)
        self.feed.local(records)
        self.feed.live(live)

    def _notify_listeners(self, records: list[TransitionRecord]) -> None:
        for listener in self._commit_listeners:
            listener(records)

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
        """Create tasks in one transaction, all or none (see creation.py for idempotency keys)."""

        async def op(wb: WriteBatch) -> list[CreateResult]:
            results = await creation.create(wb, new, actor)
            for result in results:
                if result.doomed_by is not None:  # a dependency had already failed
                    reason = f"dependency_failed: {result.doomed_by}"
                    ended = await apply_transition(
                        wb, result.task["id"], State.CANCELLED, reason, actor, None, {}, State.QUEUED
                    )
                    result.task = ended.task
            return results

        return await self._submit_creation(op)

    async def spawn(self, parent_id: str, guard: Guard, child: NewTask, *, actor: str) -> CreateResult | None:
        """Create a child task for the attempt of `parent_id` that `guard` names; None if the
        parent is no longer that attempt's (a stalled or lost job must not spawn). The same
        key again answers the child spawned first (its idempotency key is the parent's and
        the spawn's)."""

        async def op(wb: WriteBatch) -> CreateResult | None:
            holder = sa.select(tasks.c.id).where(
                tasks.c.id == parent_id,
                tasks.c.worker_id == guard.worker_id,
                tasks.c.attempt == guard.attempt,
                tasks.c.state.in_(ACTIVE_VALUES),
            )
            if not self.db.is_sqlite:
                holder = holder.with_for_update()
            if (await wb.conn.execute(holder)).first() is None:
                return None
            [result] = await creation.create(wb, [child], actor)
            await wb.conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == parent_id, ~tasks.c.has_children)
                .values(has_children=True)
            )
            return result

        return await self._submit_creation(op)

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
        then: Sequence[Step] = (),
    ) -> TransitionResult:
        """Move a task to `to`, if the table allows it; the one way a task's state changes.

        `then`: transitions that follow in the same transaction when this one applies, as
        when a job has no hook between them (`running → collecting → completed` without
        a `collect`). Each keeps its own row, `seq` and event, published after the commit;
        one commit instead of several is what a task waits for.
        """
        for step_fields in [fields or {}, *(step.fields for step in then)]:
            unknown = set(step_fields) - TRANSITION_FIELDS
            if unknown:
                raise ValueError(f"transition() cannot set {sorted(unknown)}")

        op = _TransitionOp(task_id, to, reason, actor, guard, fields or {}, expect_from, tuple(then))
        return await self._writer.submit(op)

    async def claim(
        self, worker_id: str, limit: int, *, starting: Collection[str] = ()
    ) -> list[dict[str, Any]]:
        """Claim up to `limit` due queued tasks (priority, then age) for `worker_id`.

        A claimed task of a type in `starting` (its job has no `prepare` hook, so nothing
        runs between `preparing` and `running`) that is not being restored goes on to
        `running` in the same statement: each transition has its own row, `seq` and event,
        and the job's code starts one commit sooner. Its row says `"state": "running"`.
        """

        async def op(wb: WriteBatch) -> list[dict[str, Any]]:
            rows = await claim.apply_claim(wb, worker_id, limit, self.db.is_sqlite, starting)
            for row in rows:
                rec = row.pop("started_record")
                if rec is not None:
                    row["started"] = TransitionResult(
                        Outcome.APPLIED, rec.from_state, rec.to_state, rec.task, rec
                    )
            return rows

        return await self._writer.submit(op)

    async def reset(self, *, reason: str, actor: str) -> list[TransitionResult]:
        """Emergency reset: every non-terminal task ends where `states.RESET_TO` says."""

        async def op(wb: WriteBatch) -> list[TransitionResult]:
            active = await wb.conn.execute(
                sa.select(tasks.c.id, tasks.c.state).where(tasks.c.state.in_(ACTIVE_VALUES))
            )
            results = []
            for task_id, state in active.all():
                to = RESET_TO[State(state)]
                results.append(await apply_transition(wb, task_id, to, reason, actor, None, {}, State(state)))
            return results

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


async def apply_transition(
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
                ignored = "ignored %s -> %s for task %s (%s): the task is already terminal"
                log.info(ignored, from_state, to.value, task_id, actor)
                return TransitionResult(Outcome.REFUSED, from_state, to.value, {})
            check_transition(from_state, to.value)
        now = utcnow()
        params = {f"f_{name}": value for name, value in fields.items()}
        params.update(b_id=task_id, b_from=from_state, b_to=to.value, b_now=now, b_reason=reason)
        if guard is not None:
            params.update(b_worker=guard.worker_id, b_attempt=guard.attempt)
        stmt = transition_statement(to, frozenset(fields), guard is not None)
        row = (await conn.execute(stmt, params)).mappings().first()
        if row is None:
            continue  # changed under us: read again and decide again
        if on_entry(to).finishes:
            if row["questions_pending"]:
                expiring = {"b_ids": [task_id], "b_now": now, "b_by": f"task {to.value}"}
                await conn.execute(EXPIRE_QUESTIONS, expiring)
            # Its descendants end first, each with its own row (CONTRACT §6).
            if row["has_children"]:
                await _end_children(wb, [(task_id, to)], actor)
        rec = TransitionRecord(task_id, from_state, to.value, now, reason, actor, task_payload(row, now))
        rec.unblocks = bool(row["has_dependents"])
        wb.record(rec)
        if on_entry(to).finishes and row["has_dependents"]:
            await _end_dependents(wb, [(task_id, to)], actor)
        return TransitionResult(Outcome.APPLIED, from_state, to.value, rec.task, rec)


async def _end_children(wb: WriteBatch, ended: Sequence[tuple[str, State]], actor: str) -> None:
    """A parent that ends cancelled or failed takes its unfinished children with it."""
    gone = {task_id: state for task_id, state in ended if state is not State.COMPLETED}
    if not gone:
        return
    children = await wb.conn.execute(_OPEN_CHILDREN, {"b_ids": list(gone)})
    for child_id, state, parent_id in children.all():
        reason = f"parent_{gone[parent_id].value}"
        to = RESET_TO[State(state)]
        await apply_transition(wb, child_id, to, reason, actor, None, {}, State(state))


async def _end_dependents(wb: WriteBatch, ended: Sequence[tuple[str, State]], actor: str) -> None:
    """A task that completes counts one blocker off each dependent; one that fails or is
    cancelled cancels its dependents, transitively (each with its own row)."""
    completed = [task_id for task_id, state in ended if state is State.COMPLETED]
    if completed:
        await wb.conn.execute(_UNBLOCK, {"b_ids": completed})
    failed = [task_id for task_id, state in ended if state is not State.COMPLETED]
    if not failed:
        return
    dependents = await wb.conn.execute(_WAITING_DEPENDENTS, {"b_ids": failed})
    for dependent_id, dependency_id in dependents.all():
        reason = f"dependency_failed: {dependency_id}"
        await apply_transition(wb, dependent_id, State.CANCELLED, reason, actor, None, {}, State.QUEUED)


_b_ids: sa.BindParameter[list[str]] = sa.bindparam("b_ids", expanding=True)
_OPEN_CHILDREN = sa.select(tasks.c.id, tasks.c.state, tasks.c.parent_id).where(
    tasks.c.parent_id.in_(_b_ids), tasks.c.state.in_(ACTIVE_VALUES)
)
_WAITING_DEPENDENTS = (
    sa.select(task_dependencies.c.task_id, task_dependencies.c.depends_on)
    .join(tasks, tasks.c.id == task_dependencies.c.task_id)
    .where(task_dependencies.c.depends_on.in_(_b_ids), tasks.c.state == State.QUEUED.value)
)
#: One blocker less for each edge from a completed task; at 0 the task can be claimed.
_UNBLOCK = (
    sa.update(tasks)
    .where(
        tasks.c.state == State.QUEUED.value,
        tasks.c.id.in_(
            sa.select(task_dependencies.c.task_id).where(task_dependencies.c.depends_on.in_(_b_ids))
        ),
    )
    .values(
        blockers=tasks.c.blockers
        - sa.select(sa.func.count())
        .select_from(task_dependencies)
        .where(task_dependencies.c.task_id == tasks.c.id, task_dependencies.c.depends_on.in_(_b_ids))
        .scalar_subquery()
    )
)


@dataclass(slots=True)
class _TransitionOp(GroupableOp):
    """`Store.transition()` as an op: alone it is `apply_transition`; with neighbours,
    the ones whose caller knows the current state share one UPDATE per kind."""

    task_id: str
    to: State
    reason: str | None
    actor: str
    guard: Guard | None
    fields: Mapping[str, Any]
    expect_from: State | None
    then: tuple[Step, ...] = ()

    @property
    def key(self) -> str:
        return self.task_id

    async def __call__(self, wb: WriteBatch) -> TransitionResult:
        done: list[tuple[bool, Any]] = [(True, await self.first_step(wb))]
        await _follow_up(wb, [self], done)
        result: TransitionResult = done[0][1]
        return result

    async def first_step(self, wb: WriteBatch, *, hint: bool = True) -> TransitionResult:
        """This op's own transition, without the steps that follow it."""
        expect_from = self.expect_from if hint else None
        return await apply_transition(
            wb, self.task_id, self.to, self.reason, self.actor, self.guard, self.fields, expect_from
        )

    def next_step(self) -> _TransitionOp:
        """The op of the next step (there is one), expecting the state this one entered."""
        step, *rest = self.then
        return _TransitionOp(
            self.task_id, step.to, step.reason, self.actor, self.guard, step.fields, self.to, tuple(rest)
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
    ended_by: dict[str, list[tuple[str, State]]] = {}
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
        stmt = group_transition_statement(to, names, guarded, len(members))
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
            rec.unblocks = bool(task_row["has_dependents"])
            wb.record(rec)
            outcomes[i] = (True, TransitionResult(Outcome.APPLIED, from_state, to.value, payload, rec))
            if is_terminal(to.value):
                if task_row["questions_pending"]:
                    finished.setdefault(to.value, []).append(op.task_id)
                if task_row["has_children"] or task_row["has_dependents"]:
                    ended_by.setdefault(op.actor, []).append((op.task_id, to))
    for state, task_ids in finished.items():
        await wb.conn.execute(EXPIRE_QUESTIONS, {"b_ids": task_ids, "b_now": now, "b_by": f"task {state}"})
    for actor, ended in ended_by.items():
        await _end_children(wb, ended, actor)
        await _end_dependents(wb, ended, actor)
    for i, op in enumerate(ops):
        if outcomes[i] is None:
            try:
                outcomes[i] = (True, await op.first_step(wb, hint=i not in retry_without_hint))
            except TaskstateError as refusal:
                outcomes[i] = (False, refusal)
    done = [outcome for outcome in outcomes if outcome is not None]
    await _follow_up(wb, ops, done)
    return done


async def _follow_up(wb: WriteBatch, ops: list[_TransitionOp], done: list[tuple[bool, Any]]) -> None:
    """The next steps of the ops that have some, grouped in their turn (alone or with
    neighbours): every task's rows stay in order, and neighbours share one UPDATE per kind."""
    pending: list[tuple[TransitionResult, _TransitionOp]] = []
    for op, (ok, result) in zip(ops, done, strict=True):
        if ok and result.applied and op.then:
            pending.append((result, op.next_step()))
    if not pending:
        return
    followed = await _apply_transitions(wb, [following for _, following in pending])
    for (first, _), (ok, result) in zip(pending, followed, strict=True):
        if ok and result.applied:
            first.then.extend([result, *result.then])
            result.then = []
