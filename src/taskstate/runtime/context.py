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
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from taskstate.core.errors import TaskstateError


class JobCancelled(Exception):
    """Raised inside a job by `ctx.raise_if_cancelled()` once the task was cancelled."""


class CheckpointTooLarge(TaskstateError):
    """The checkpoint is larger than TASKSTATE_MAX_CHECKPOINT_BYTES."""

    code = "checkpoint_too_large"
    status = 413


@dataclass(frozen=True, slots=True)
class ChildHandle:
    """A child task spawned by a job (`ctx.spawn`): wait for it with `ctx.wait`."""

    id: str
    key: str
    type: str


class ChildFailed(Exception):
    """A child the job waited for ended `failed` or `cancelled` (the job may catch it)."""

    def __init__(self, child_id: str, state: str, error: str | None) -> None:
        self.child_id = child_id
        self.state = state
        self.error = error
        why = f": {error}" if error else ""
        super().__init__(f"child task {child_id} ended {state}{why}")


class Decision(StrEnum):
    """How a restored job goes on (its `validate` hook's answer, CONTRACT §6)."""

    PROCEED = "proceed"  #: run as if nothing happened (it re-attaches to its children)
    CHECKPOINT = "checkpoint"  #: resume from the last checkpoint
    FRESH = "fresh"  #: start over: the checkpoint is dropped
    MANUAL = "manual"  #: a person decides, through a question on the task


@dataclass(frozen=True, slots=True)
class Restoration:
    """What a restored run finds of the runs before it (`ctx.restoration`)."""

    count: int  #: how many times the task has been restored, this time included
    source: str | None  #: `worker_lost`, `server_restart` or `manual`
    lost_in: str | None  #: the state the task was in when its worker lost it
    checkpoint: Any  #: the last checkpoint (None when there is none or it is unreadable)
    pending_questions: list[dict[str, Any]]  #: questions asked before and not answered yet
    children: list[ChildHandle]  #: the children spawned before, in spawn order
    open_children: list[str]  #: the ids of those not finished yet
    warnings: list[str]  #: what the service noticed (an unreadable checkpoint, say)


class ContextReporter(Protocol):
    """How a `JobContext` reaches the supervisor that runs it."""

    def report_progress(self, ctx: JobContext) -> None: ...

    async def save_checkpoint(self, ctx: JobContext, data: Any) -> None: ...

    def log(self, ctx: JobContext, level: str, message: str) -> None: ...

    async def confirm_lease(self, ctx: JobContext) -> None: ...

    async def mark_serving(self, ctx: JobContext, endpoint: str | None, info: Any) -> None: ...

    async def spawn(
        self, ctx: JobContext, task_type: str, params: dict[str, Any] | None, **how: Any
    ) -> ChildHandle: ...

    async def wait(
        self, ctx: JobContext, children: Sequence[ChildHandle], derive_progress: bool
    ) -> list[Any]: ...

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
        #: While the job waits for children: those still open (shown on the task).
        self.waiting_for: list[str] = []
        #: Set when this run restores a task that was lost or handed back (else None).
        self.restoration: Restoration | None = None
        self._reporter = reporter
        self._children: list[ChildHandle] = []

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
        await self._reporter.confirm_lease(self)

    def log(self, message: str, level: str = "info") -> None:
        """Add a line to the task's log (also streamed live as a `log` event)."""
        self._reporter.log(self, level, str(message))

    async def serving(self, endpoint: str | None = None, info: Any = None) -> None:
        """A service job is up: the task goes `serving`, showing `endpoint` and `info`."""
        await self._reporter.mark_serving(self, endpoint, info)
        await self._reporter.confirm_lease(self)

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

    async def spawn(
        self,
        task_type: str,
        params: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        name: str | None = None,
        depends_on: Sequence[ChildHandle | str] = (),
        requires_approval: bool = False,
    ) -> ChildHandle:
        """Start a child task (its `parent_id` is this task). Idempotent per `key` (by default
        the spawn's position among this job's spawns): a job restored after a crash that
        spawns again gets the child it spawned before, never a copy. `depends_on` (other
        children, or task ids) and `requires_approval` hold it as they hold any task."""
        deps = [d.id if isinstance(d, ChildHandle) else str(d) for d in depends_on]
        handle = await self._reporter.spawn(
            self, task_type, params, key=key, name=name, depends_on=deps, requires_approval=requires_approval
        )
        self._children.append(handle)
        await self._reporter.confirm_lease(self)
        return handle

    async def wait(self, children: Sequence[ChildHandle], *, derive_progress: bool = True) -> list[Any]:
        """Wait until every one of `children` has ended; answers their results, in order.

        Raises `ChildFailed`, naming the child, if one failed or was cancelled. While it
        waits, the job holds none of its instance's slots, the task shows the children
        still open in `waiting_for`, and (with `derive_progress`) its progress is theirs.
        """
        return await self._reporter.wait(self, list(children), derive_progress)

    async def wait_all(self, *, derive_progress: bool = True) -> list[Any]:
        """`wait` for every child this run spawned (a restored run: re-spawned)."""
        return await self.wait(self._children, derive_progress=derive_progress)

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
