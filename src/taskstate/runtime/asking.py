"""Questions a job asks a person, from the job's side: asked once, waited for, answered
from anywhere.

A question is keyed by the job (`key=`), or by the order of its `ask()` calls
("q1", "q2", …), so that a restored job asking again finds the same question
(core/questions.py keeps them). The answer reaches the waiting job from the bus
(an answer given on any instance), or from a look at the question now and then
(answered while this instance was away).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from taskstate.core import questions
from taskstate.core.db import utcnow
from taskstate.core.nesting import too_deep, too_deep_message
from taskstate.core.store import Guard, Store
from taskstate.runtime.context import JobCancelled, JobContext
from taskstate.runtime.durably import durably

#: How often a waiting job looks at its question, in case the answer's event was missed.
ANSWER_POLL_SECONDS = 1.0


class JobQuestions:
    """The questions of one attempt of one task."""

    def __init__(self, task_id: str, guard: Guard, store: Store, max_pending: int) -> None:
        self.task_id = task_id
        self.guard = guard
        self.store = store
        self.max_pending = max_pending
        self._asked = 0
        self._answers: dict[str, asyncio.Future[Any]] = {}

    def deliver(self, question_id: str, answer: Any) -> None:
        """An answer given on any instance (the supervisor hears of it on the bus)."""
        waiter = self._answers.get(question_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    async def ask(
        self,
        ctx: JobContext,
        question: str,
        choices: list[str] | None,
        context: Any,
        key: str | None,
        timeout_seconds: float | None,
        default: Any,
    ) -> Any:
        self._asked += 1
        key = key or f"q{self._asked}"
        if choices is not None:
            choices = [str(c) for c in choices]
            if not choices:
                raise ValueError("choices, when given, must not be empty")
        if too_deep(context) or too_deep(default):
            raise ValueError(too_deep_message("the question's context or default"))
        timeout_at = utcnow() + timedelta(seconds=timeout_seconds) if timeout_seconds is not None else None
        asked = await durably(
            self.task_id,
            "asking a question",
            lambda: questions.ask(
                self.store,
                self.task_id,
                self.guard,
                key=key,
                question=str(question),
                choices=choices,
                context=context,
                timeout_at=timeout_at,
                default=default,
                max_pending=self.max_pending,
            ),
        )
        if asked is None:
            ctx.cancelled.set()
            raise JobCancelled(self.task_id)
        if asked.status != "pending":
            return asked.answer
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answers[asked.id] = waiter
        deadline = asked.timeout_at
        try:
            while True:
                wait = ANSWER_POLL_SECONDS
                if deadline is not None:
                    wait = max(0.0, min(wait, (deadline - utcnow()).total_seconds()))
                cancelled = asyncio.ensure_future(ctx.cancelled.wait())
                try:
                    await asyncio.wait({waiter, cancelled}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    cancelled.cancel()
                if waiter.done():
                    return waiter.result()
                ctx.raise_if_cancelled()
                # Answered elsewhere (another instance, or while we were down)?
                current = await durably(
                    self.task_id, "reading a question", lambda: questions.status_of(self.store, asked.id)
                )
                if current is not None and current.status != "pending":
                    return current.answer
                if deadline is not None and utcnow() >= deadline:
                    expired = await durably(
                        self.task_id,
                        "expiring a question",
                        lambda: questions.expire(self.store, self.task_id, asked.id),
                    )
                    return expired.answer if expired is not None else default
        finally:
            self._answers.pop(asked.id, None)
