"""Questions a job asks a person, persisted so that they survive restarts.

A question is keyed by the job (`key=`), or by the order of its `ask()`
calls ("q1", "q2", …), so that a restored job asking again finds the same
question: still pending (shown again, not asked twice) or already answered
(the stored answer, at once). The task carries the pending ones in
`pending_questions`, updated in the same transaction as the question rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskstate.core.bus import Event
from taskstate.core.creation import APPROVAL_KEY
from taskstate.core.db import iso, iso_or_none, questions, tasks, utcnow
from taskstate.core.errors import Conflict, NotFound, ValidationFailed
from taskstate.core.states import State, is_terminal
from taskstate.core.store import Guard, Store, apply_transition
from taskstate.core.writer import WriteBatch


class AlreadyAnswered(Conflict):
    """The question was answered already."""

    code = "already_answered"


class TooManyQuestions(Conflict):
    """The task has as many pending questions as it may."""

    code = "too_many_questions"


class TaskFinished(Conflict):
    """The task has finished: its questions can no longer be answered."""

    code = "task_finished"


@dataclass(frozen=True, slots=True)
class Asked:
    id: str
    status: str
    answer: Any
    timeout_at: datetime | None = None


def question_payload(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "question": row["question"],
        "choices": row["choices"],
        "context": row["context"],
        "asked_at": iso_or_none(row["asked_at"]),
        "timeout_at": iso_or_none(row["timeout_at"]),
    }


def _event(task_id: str, question: dict[str, Any]) -> Event:
    return Event.of({"type": "question", "task_id": task_id, "question": question})


async def ask(
    store: Store,
    task_id: str,
    guard: Guard,
    *,
    key: str,
    question: str,
    choices: list[str] | None,
    context: Any,
    timeout_at: datetime | None,
    default: Any,
    max_pending: int = 20,
) -> Asked | None:
    """Persist a question (or find the one asked before under `key`); None if the task is gone."""

    async def op(wb: WriteBatch) -> Asked | None:
        conn = wb.conn
        existing = (
            (
                await conn.execute(
                    sa.select(questions).where(questions.c.task_id == task_id, questions.c.key == key)
                )
            )
            .mappings()
            .first()
        )
        if existing is not None:
            if existing["status"] == "pending":
                wb.live_events.append(_event(task_id, {**question_payload(existing), "status": "pending"}))
            return Asked(existing["id"], existing["status"], existing["answer"], existing["timeout_at"])
        task = (
            await conn.execute(
                sa.select(tasks.c.state, tasks.c.pending_questions).where(
                    tasks.c.id == task_id,
                    tasks.c.worker_id == guard.worker_id,
                    tasks.c.attempt == guard.attempt,
                )
            )
        ).first()
        if task is None or is_terminal(task.state):
            return None
        if len(task.pending_questions or []) >= max_pending:
            raise TooManyQuestions(
                f"the task has {max_pending} pending questions already; the limit is {max_pending}"
            )
        row = {
            "id": str(uuid.uuid4()),
            "task_id": task_id,
            "key": key,
            "question": question,
            "choices": choices,
            "context": context,
            "asked_at": utcnow(),
            "timeout_at": timeout_at,
            "default_answer": default,
            "status": "pending",
        }
        await conn.execute(questions.insert().values(**row))
        pending = [*(task.pending_questions or []), question_payload(row)]
        await conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(pending_questions=pending))
        wb.live_events.append(_event(task_id, {**question_payload(row), "status": "pending"}))
        return Asked(row["id"], "pending", None, timeout_at)

    return await store.write(op)


async def answer(store: Store, task_id: str, question_id: str, value: Any, *, by: str) -> dict[str, Any]:
    """Record the answer to a pending question; the job waiting on it is told by the caller."""

    async def op(wb: WriteBatch) -> dict[str, Any]:
        conn = wb.conn
        task = (
            await conn.execute(
                sa.select(tasks.c.state, tasks.c.pending_questions).where(tasks.c.id == task_id)
            )
        ).first()
        if task is None:
            raise NotFound(f"no task with id {task_id!r}")
        row = (
            (
                await conn.execute(
                    sa.select(questions).where(questions.c.id == question_id, questions.c.task_id == task_id)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"task {task_id} has no question {question_id!r}")
        # An answered question says so whatever became of its task since: a second answer
        # racing the job's quick completion still learns the first one was taken.
        if row["status"] == "answered":
            raise AlreadyAnswered(f"question {question_id} is answered already", status="answered")
        if is_terminal(task.state):
            raise TaskFinished(f"the task is {task.state}: its questions can no longer be answered")
        if row["status"] != "pending":
            raise AlreadyAnswered(f"question {question_id} is {row['status']} already", status=row["status"])
        if row["choices"] and value not in row["choices"]:
            raise ValidationFailed(
                f"the answer must be one of {row['choices']!r}", field="answer", choices=row["choices"]
            )
        await _close(wb, task_id, question_id, task.pending_questions, value, by, "answered")
        if row["key"] == APPROVAL_KEY:
            await _decide(wb, task_id, approved=value == "approve", by=by)
        return {**question_payload(row), "status": "answered", "answer": value}

    return await store.write(op)


async def _decide(wb: WriteBatch, task_id: str, *, approved: bool, by: str) -> None:
    """An approval gate's answer: one blocker less, or the task (and its dependents) cancelled."""
    if approved:
        await wb.conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == task_id, tasks.c.state == State.QUEUED.value)
            .values(blockers=tasks.c.blockers - 1)
        )
    else:
        await apply_transition(wb, task_id, State.CANCELLED, "rejected", by, None, {}, State.QUEUED)


async def expire(store: Store, task_id: str, question_id: str) -> Asked | None:
    """A question's timeout passed: answer it with its default (if nobody answered first)."""

    async def op(wb: WriteBatch) -> Asked | None:
        row = (
            (await wb.conn.execute(sa.select(questions).where(questions.c.id == question_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        if row["status"] != "pending":
            return Asked(row["id"], row["status"], row["answer"])
        pending = (
            await wb.conn.execute(sa.select(tasks.c.pending_questions).where(tasks.c.id == task_id))
        ).scalar()
        await _close(wb, task_id, question_id, pending, row["default_answer"], "timeout", "expired")
        return Asked(row["id"], "expired", row["default_answer"])

    return await store.write(op)


async def _close(
    wb: WriteBatch, task_id: str, question_id: str, pending: Any, value: Any, by: str, status: str
) -> None:
    now = utcnow()
    await wb.conn.execute(
        sa.update(questions)
        .where(questions.c.id == question_id)
        .values(status=status, answer=value, answered_at=now, answered_by=by)
    )
    left = [q for q in (pending or []) if q.get("id") != question_id]
    await wb.conn.execute(
        sa.update(tasks).where(tasks.c.id == task_id).values(pending_questions=left or None, updated_at=now)
    )
    wb.live_events.append(
        _event(task_id, {"id": question_id, "status": status, "answer": value, "answered_at": iso(now)})
    )


async def status_of(store: Store, question_id: str) -> Asked | None:
    async with store.db.reader.connect() as conn:
        row = (
            await conn.execute(
                sa.select(questions.c.id, questions.c.status, questions.c.answer).where(
                    questions.c.id == question_id
                )
            )
        ).first()
    return Asked(row.id, row.status, row.answer) if row is not None else None


async def pending(store: Store, owner: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Every pending question across tasks (of `owner`, if given), oldest first: an approvals inbox."""
    query = (
        sa.select(questions, tasks.c.name.label("task_name"), tasks.c.type.label("task_type"))
        .join(tasks, tasks.c.id == questions.c.task_id)
        .where(questions.c.status == "pending")
        .order_by(questions.c.asked_at)
        .limit(limit)
    )
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    async with store.db.reader.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        {
            **question_payload(r),
            "task_id": r["task_id"],
            "task_name": r["task_name"],
            "task_type": r["task_type"],
            "status": r["status"],
        }
        for r in rows
    ]
