"""The sweep: what lost instances held goes back to the queue, and stuck tasks fail.

Every instance sweeps after each heartbeat. A held task whose instance's heartbeat is
older than the orphan timeout goes `orphaned`, then `queued` (attempt + 1, to be
restored) while it has attempts left, else `failed` (`attempts_exhausted`). Each step
is the store's one transition, guarded by the worker and attempt the sweep read, so
racing sweepers are harmless.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from taskstate.core.db import ACTIVE_VALUES, Database, tasks, utcnow, workers
from taskstate.core.errors import InvalidTransition
from taskstate.core.states import HELD_STATES, State, can_transition
from taskstate.core.store import Guard, Store, TransitionResult, apply_transition
from taskstate.core.writer import WriteBatch


async def sweep(
    store: Store, *, me: str, orphan_after: float, default_timeout: float
) -> list[TransitionResult]:
    """Recover what lost workers held, and fail tasks stuck past their timeout.

    A held task whose worker's heartbeat is older than `orphan_after` goes
    `orphaned`, then `queued` (attempt + 1, to be restored) while it has
    attempts left, else `failed` (`attempts_exhausted`). Every step is
    guarded by the worker and attempt it read, so racing sweepers are harmless.
    """

    async def op(wb: WriteBatch) -> list[TransitionResult]:
        return await _apply_sweep(wb, me, orphan_after, default_timeout)

    return await store.write(op)


async def count_stuck(db: Database, default_timeout: float) -> int:
    """Held tasks whose last sign of life is older than their timeout."""
    async with db.reader.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(tasks.c.heartbeat_at, tasks.c.timeout_seconds).where(tasks.c.state.in_(_WATCHED))
            )
        ).all()
    now = utcnow()
    return sum(
        1
        for beat, timeout in rows
        if beat is not None and (now - beat).total_seconds() > (timeout or default_timeout)
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
                        await apply_transition(
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
                orphaned = await apply_transition(
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
                    await apply_transition(wb, task_id, State.QUEUED, "worker_lost", "sweeper", None, fields)
                )
            else:
                fields = {
                    "error": f"its worker was lost on each of its {max_attempts} attempts",
                    "error_type": "WorkerLost",
                }
                results.append(
                    await apply_transition(
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
                await apply_transition(
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
