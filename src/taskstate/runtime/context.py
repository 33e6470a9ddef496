"""What a job's code sees while it runs: its `JobContext`.

Progress is cheap to report (kept in memory, published live, written coalesced);
checkpoints and questions are durable before they return; cancellation is an event
the job may wait on. The context reaches the supervisor's side of the job (runner.py)
through the `ContextReporter` protocol, so that this module imports nothing of it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any, Protocol

from taskstate.core.errors import TaskstateError


class JobCancelled(Exception):
    """Raised inside a job by `ctx.raise_if_cancelled()` once the task was cancelled."""


class CheckpointTooLarge(TaskstateError):
    """The checkpoint is larger than TASKSTATE_MAX_CHECKPOINT_BYTES."""

    code = "checkpoint_too_large"
    status = 413


class ContextReporter(Protocol):
    """How a `JobContext` reaches the supervisor that runs it."""

    def report_progress(self, ctx: JobContext) -> None: ...

    async def save_checkpoint(self, ctx: JobContext, data: Any) -> None: ...

    def log(self, ctx: JobContext, level: str, message: str) -> None: ...

    async def confirm_lease(self, ctx: JobContext) -> None: ...

    async def mark_serving(self, ctx: JobContext, endpoint: str | None, info: Any) -> None: ...

    async def ask(
        self,
        ctx: JobContext,
        question: str,
        choices: list[str] | None,
        context: Any,
        key: str | None,
        timeout_seconds: float | None,
        default: Any,
    ) -> Any: ...


#: The context of the job running in this asyncio task (for the logging handler).
current_context: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "taskstate_job_context", default=None
)

#: Loggers whose records are taskstate's own (or its libraries'), never a job's log.
_NOT_JOB_LOGGERS = (
    "taskstate",
    "sqlalchemy",
    "alembic",
    "asyncio",
    "uvicorn",
    "httpx",
    "httpcore",
    "websockets",
    "aiosqlite",
    "asyncpg",
)


class JobLogHandler(logging.Handler):
    """Sends the `logging` records a job emits while it runs to that task's log."""

    def emit(self, record: logging.LogRecord) -> None:
        ctx = current_context.get()
        if ctx is None or record.name.startswith(_NOT_JOB_LOGGERS):
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            ctx.log(message, level=record.levelname.lower())
        except Exception:
            self.handleError(record)


class JobContext:
    """The running task, as its job sees it.

    Progress is cheap to report (kept in memory, published live, written to the
    database coalesced); checkpoints are durable before `checkpoint()` returns.
    """

    def __init__(
        self,
        *,
        task_id: str,
        task_type: str,
        params: Any,
        attempt: int,
        restored_checkpoint: Any,
        reporter: ContextReporter,
    ) -> None:
        self.task_id = task_id
        self.task_type = task_type
        self.params = params
        self.attempt = attempt
        #: The last checkpoint of an earlier run of this task, or None on a fresh start.
        self.restored_checkpoint = restored_checkpoint
        #: Set when the task is cancelled (or stopped); a job should wind down promptly.
        self.cancelled = asyncio.Event()
        #: Set when a serving service job is asked to stop (`POST /tasks/{id}/stop`).
        self.stop_requested = asyncio.Event()
        self.phase: str | None = None
        self.lifecycle_phase = "preparing"
        self.progress_value = 0.0
        self.message: str | None = None
        self.items_processed = 0
        self.items_failed = 0
        self._reporter = reporter

    def progress(
        self,
        pct: float,
        message: str | None = None,
        *,
        items_processed: int | None = None,
        items_failed: int | None = None,
        phase: str | None = None,
    ) -> None:
        """Report progress (0-100); clamped, published live, written coalesced."""
        self.progress_value = min(100.0, max(0.0, float(pct)))
        if message is not None:
            self.message = message
        if items_processed is not None:
            self.items_processed = items_processed
        if items_failed is not None:
            self.items_failed = items_failed
        if phase is not None:
            self.phase = phase
        self._reporter.report_progress(self)

    async def checkpoint(self, data: Any) -> None:
        """Store `data` (JSON) durably; a restored run receives the last one as `restored_checkpoint`."""
        await self._reporter.save_checkpoint(self, data)

    def log(self, message: str, level: str = "info") -> None:
        """Add a line to the task's log (also streamed live as a `log` event)."""
        self._reporter.log(self, level, str(message))

    async def serving(self, endpoint: str | None = None, info: Any = None) -> None:
        """A service job is up: the task goes `serving`, showing `endpoint` and `info`."""
        await self._reporter.mark_serving(self, endpoint, info)

    async def until_stopped(self) -> None:
        """Wait until the service is asked to stop (or the task is cancelled)."""
        stop = asyncio.ensure_future(self.stop_requested.wait())
        cancel = asyncio.ensure_future(self.cancelled.wait())
        try:
            await asyncio.wait({stop, cancel}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            cancel.cancel()
        await self._reporter.confirm_lease(self)

    async def ask(
        self,
        question: str,
        choices: list[str] | None = None,
        *,
        context: Any = None,
        key: str | None = None,
        timeout_seconds: float | None = None,
        default: Any = None,
    ) -> Any:
        """Ask a person and wait for the answer (one of `choices`, if given).

        The question survives restarts: a restored job asking again under the same `key`
        (by default, the same position among this job's questions) gets the stored answer
        at once, or waits on the same pending question. After `timeout_seconds` the answer
        is `default`.
        """
        answer = await self._reporter.ask(self, question, choices, context, key, timeout_seconds, default)
        await self._reporter.confirm_lease(self)
        return answer

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled(self.task_id)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake and raise `JobCancelled` as soon as the task is cancelled.

        Also raises it, on waking, if the task was taken from this attempt meanwhile: when
        this instance stalled past the orphan timeout (a paused VM), peers re-queue its
        tasks, and the job must not take its next step beside the attempt that replaced it
        (see lease.py). `ask()` and `until_stopped()` check the same before they return.
        """
        try:
            await asyncio.wait_for(self.cancelled.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            await self._reporter.confirm_lease(self)
            return
        raise JobCancelled(self.task_id)
