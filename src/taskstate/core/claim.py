"""The claim: due queued tasks with nothing left to wait for, to one worker, `queued →
preparing`, checked against the table and written like every transition; and, for a
task whose job has no `prepare` hook (nothing of it runs in between), `preparing →
running` in the same statement, with a row, `seq` and event of its own.

Claiming stays one index range however many tasks are blocked (waiting for their
dependencies or an approval): the queue's partial index holds only the claimable ones.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from taskstate.core.db import tasks, utcnow
from taskstate.core.payloads import task_payload
from taskstate.core.statements import check_transition, transition_values
from taskstate.core.states import State
from taskstate.core.writer import TransitionRecord, WriteBatch

_b_now = sa.bindparam("b_now", type_=tasks.c.updated_at.type)
#: 'queued' as a literal, not a bind parameter: only then can a generic plan (what a prepared
#: statement gets after five runs) prove the partial queue index's predicate and use it.
_QUEUED = sa.literal_column("'queued'", tasks.c.state.type)
_NOTHING_LEFT = sa.literal_column("0", tasks.c.blockers.type)
_CLAIM_CANDIDATES = (
    sa.select(tasks.c.id)
    .where(tasks.c.state == _QUEUED, tasks.c.blockers == _NOTHING_LEFT, tasks.c.run_at <= _b_now)
    .order_by(tasks.c.priority.desc(), tasks.c.created_at)
    .limit(sa.bindparam("b_limit", type_=sa.Integer))
)
_CLAIM_CANDIDATES_SKIP_LOCKED = _CLAIM_CANDIDATES.with_for_update(skip_locked=True)
#: The claim is `queued → preparing`, checked against the table like every transition and
#: writing what entering `preparing` writes; restoring a re-queued task also counts the
#: restoration. One statement, which updates by id alone, so that the primary key is the
#: only index to use: the candidates are still queued, locked FOR UPDATE SKIP LOCKED by
#: this transaction (PostgreSQL) or read in this exclusive one (SQLite, a single writer).
check_transition(State.QUEUED, State.PREPARING)
check_transition(State.PREPARING, State.RUNNING)
#: Goes on to `running`: its type is one that starts at once, and it is not being restored
#: (a restoration decides in between). `running` writes nothing of its own besides the
#: heartbeat, which the claim writes too: the `preparing` row differs only by its state.
_STARTS = sa.and_(
    tasks.c.type.in_(sa.bindparam("b_starting", expanding=True)), sa.not_(tasks.c.restore_pending)
)
_CLAIM = (
    sa.update(tasks)
    .values(
        state=sa.case((_STARTS, State.RUNNING.value), else_=State.PREPARING.value),
        updated_at=_b_now,
        last_reason=sa.case((_STARTS, "started"), else_="claimed"),
        **transition_values(
            State.PREPARING,
            frozenset({"worker_id", "heartbeat_at", "restore_pending"}),
            _b_now,
            {"worker_id": sa.bindparam("b_worker"), "heartbeat_at": _b_now, "restore_pending": False}.get,
        ),
        restoration_count=sa.case(
            (tasks.c.restore_pending, tasks.c.restoration_count + 1),
            else_=tasks.c.restoration_count,
        ),
        last_restored_at=sa.case((tasks.c.restore_pending, _b_now), else_=tasks.c.last_restored_at),
    )
    .returning(*tasks.c)
)
#: On PostgreSQL the candidates are an `ARRAY(SELECT …)`, evaluated once before the UPDATE
#: probes the primary key with `id = ANY(…)`: `IN (SELECT …)`, on a table PostgreSQL had no
#: statistics for yet, was planned as a scan of the whole table (15,000 buffers a claim at
#: 3,000 tasks). A row restored by this claim is one whose `last_restored_at` is its `now`.
_RESTORED_NOW = (tasks.c.last_restored_at == _b_now).label("restored_now")
_CLAIM_SQLITE = _CLAIM.where(tasks.c.id.in_(_CLAIM_CANDIDATES.scalar_subquery())).returning(_RESTORED_NOW)
_CLAIM_POSTGRES = _CLAIM.where(
    tasks.c.id == sa.any_(sa.func.array(_CLAIM_CANDIDATES_SKIP_LOCKED.scalar_subquery()))
).returning(_RESTORED_NOW)


async def apply_claim(
    wb: WriteBatch, worker_id: str, limit: int, is_sqlite: bool, starting: Collection[str]
) -> list[dict[str, Any]]:
    """Claim up to `limit` due tasks, highest priority then oldest first; those of a type in
    `starting` start too, and their rows carry the `running` record as `started_record`."""
    now = utcnow()
    params = {"b_worker": worker_id, "b_now": now, "b_limit": limit, "b_starting": list(starting)}
    rows = (await wb.conn.execute(_CLAIM_SQLITE if is_sqlite else _CLAIM_POSTGRES, params)).mappings().all()
    claimed = sorted(rows, key=lambda r: (-r["priority"], r["created_at"]))
    actor = f"worker:{worker_id}"
    preparing = State.PREPARING.value
    started: dict[str, TransitionRecord] = {}
    for row in claimed:
        payload = task_payload(row, now)
        if row["state"] == State.RUNNING.value:
            started[row["id"]] = TransitionRecord(
                row["id"], preparing, row["state"], now, "started", actor, payload
            )
            payload = {**payload, "state": preparing, "reason": "claimed"}
        wb.record(TransitionRecord(row["id"], State.QUEUED.value, preparing, now, "claimed", actor, payload))
    for rec in started.values():
        wb.record(rec)
    return [
        {**row, "restoring": bool(row["restored_now"]), "started_record": started.get(row["id"])}
        for row in claimed
    ]
