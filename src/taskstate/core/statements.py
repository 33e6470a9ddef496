"""What a transition writes, as SQL: one description for the single, the grouped and the
claim's statements.

Statements are built once per kind of transition (target state, the fields it sets,
guarded or not) with bind parameters only, so that SQLAlchemy neither rebuilds them nor
recomputes their cache keys on the hot path.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from taskstate.core.db import questions, tasks
from taskstate.core.errors import InvalidTransition
from taskstate.core.states import State, can_transition, on_entry

#: Returned by a transition that finishes its task: whether questions wait for an answer
#: (read in the UPDATE's own snapshot), so that expiring them costs a statement only then.
QUESTIONS_PENDING = (
    sa.exists()
    # `tasks.id` spelled out: SQLAlchemy writes RETURNING's columns unqualified on SQLite,
    # where a bare `id` in the subquery would be the question's own.
    .where(questions.c.task_id == sa.literal_column("tasks.id"), questions.c.status == "pending")
    .label("questions_pending")
)


def _returning(stmt: sa.Update, to: State) -> sa.Update:
    stmt = stmt.returning(*tasks.c)
    return stmt.returning(QUESTIONS_PENDING) if on_entry(to).finishes else stmt


def check_transition(from_state: str, to_state: str) -> None:
    """Raise `InvalidTransition` unless the table has the edge."""
    if not can_transition(from_state, to_state):
        raise InvalidTransition(from_state, to_state)


def transition_values(to: State, fields: frozenset[str], now: Any, field_value: Any) -> dict[str, Any]:
    """What a transition to `to` writes besides `state`, `updated_at` and `last_reason`:
    what entering `to` writes (`states.ON_ENTRY`), then the caller's `fields`. The one
    description of a transition's writes, for the single, the grouped and the claim."""
    entry = on_entry(to)
    values: dict[str, Any] = {}
    if entry.starts:
        values["started_at"] = sa.func.coalesce(tasks.c.started_at, now)
    if entry.finishes:
        values["finished_at"] = now
        values["pending_questions"] = sa.null()
    if entry.full_progress:
        values["progress"] = 100.0
    if entry.releases_worker:
        values["worker_id"] = sa.null()
    for name in sorted(fields):
        values[name] = field_value(name)
    return values


@functools.lru_cache(maxsize=256)
def group_transition_statement(to: State, fields: frozenset[str], guarded: bool, rows: int) -> sa.Update:
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
        **transition_values(to, fields, now, lambda name: v.c[f"f_{name}"]),
    }
    where = [tasks.c.id == v.c.b_id, tasks.c.state == v.c.b_from]
    if guarded:
        where += [tasks.c.worker_id == v.c.b_worker, tasks.c.attempt == v.c.b_attempt]
    return _returning(sa.update(tasks).where(*where).values(**values), to)


@functools.cache
def transition_statement(to: State, fields: frozenset[str], guarded: bool) -> sa.Update:
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
        **transition_values(
            to, fields, now, lambda name: sa.bindparam(f"f_{name}", type_=tasks.c[name].type)
        ),
    }
    stmt = _returning(
        sa.update(tasks)
        .where(tasks.c.id == sa.bindparam("b_id"), tasks.c.state == sa.bindparam("b_from"))
        .values(**values),
        to,
    )
    if guarded:
        stmt = stmt.where(
            tasks.c.worker_id == sa.bindparam("b_worker"), tasks.c.attempt == sa.bindparam("b_attempt")
        )
    return stmt


EXPIRE_QUESTIONS = (
    sa.update(questions)
    .where(questions.c.task_id.in_(sa.bindparam("b_ids", expanding=True)), questions.c.status == "pending")
    .values(
        status="expired",
        answered_at=sa.bindparam("b_now", type_=questions.c.answered_at.type),
        answered_by=sa.bindparam("b_by"),
    )
)
