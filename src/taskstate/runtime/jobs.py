"""What a job author sees: the job registry and the `JobContext`.

A job is an `async def run(ctx, params)` registered under a type name, with
its params as a pydantic model (whose JSON Schema feeds the UI's start form
and validates every request). Optional `prepare` and `collect` hooks run in
the `preparing` and `collecting` phases.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from taskstate.core.errors import PayloadTooLarge, TaskstateError, UnknownTaskType, ValidationFailed
from taskstate.core.nesting import too_deep, too_deep_message


class TaskKind(StrEnum):
    BATCH = "batch"  #: runs to completion
    SERVICE = "service"  #: stays up (`serving`) until stopped


class NoParams(BaseModel):
    """A job that takes no params."""

    model_config = ConfigDict(extra="forbid")


class JobCancelled(Exception):
    """Raised inside a job by `ctx.raise_if_cancelled()` once the task was cancelled."""


class CheckpointTooLarge(TaskstateError):
    """The checkpoint is larger than TASKSTATE_MAX_CHECKPOINT_BYTES."""

    code = "checkpoint_too_large"
    status = 413


RunHandler = Callable[["JobContext", Any], Awaitable[Any]]
PrepareHandler = Callable[["JobContext", Any], Awaitable[None]]
CollectHandler = Callable[["JobContext", Any], Awaitable[Any]]


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: RunHandler
    params_model: type[BaseModel]
    description: str
    kind: TaskKind = TaskKind.BATCH
    prepare: PrepareHandler | None = None
    collect: CollectHandler | None = None


class JobRegistry:
    """The job types this instance can run, by name."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobSpec] = {}

    def register(self, spec: JobSpec) -> JobSpec:
        if spec.name in self._jobs:
            raise ValueError(f"a job named {spec.name!r} is already registered")
        self._jobs[spec.name] = spec
        return spec

    def job(
        self,
        name: str,
        *,
        params: type[BaseModel] = NoParams,
        description: str | None = None,
        kind: TaskKind | str = TaskKind.BATCH,
        prepare: PrepareHandler | None = None,
        collect: CollectHandler | None = None,
    ) -> Callable[[RunHandler], RunHandler]:
        """Register the decorated `async def run(ctx, params)` as job type `name`."""

        def decorate(run: RunHandler) -> RunHandler:
            doc = description or (run.__doc__ or "").strip().split("\n\n")[0]
            self.register(JobSpec(name, run, params, " ".join(doc.split()), TaskKind(kind), prepare, collect))
            return run

        return decorate

    def get(self, name: str) -> JobSpec:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownTaskType(f"no job type {name!r} is registered", known=sorted(self._jobs)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def specs(self) -> list[JobSpec]:
        return sorted(self._jobs.values(), key=lambda s: s.name)

    def validate_params(self, name: str, params: dict[str, Any] | None, max_bytes: int) -> dict[str, Any]:
        """The params as the type's model sees them (defaults filled), or a clear error."""
        spec = self.get(name)
        if too_deep(params):
            raise ValidationFailed(too_deep_message("params"))
        try:
            text = json.dumps(params or {}, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            size = len(text.encode())
        except (ValueError, UnicodeEncodeError) as exc:
            # NaN/Infinity (not JSON) or lone surrogates (not Unicode text).
            raise ValidationFailed(f"params are not valid JSON text: {exc}") from None
        if _has_nul(params):
            raise ValidationFailed("params may not contain the character U+0000 (PostgreSQL cannot store it)")
        if size > max_bytes:
            raise PayloadTooLarge(f"params are {size} bytes; the limit is {max_bytes}")
        try:
            model = spec.params_model.model_validate(params or {})
        except ValidationError as exc:
            raise ValidationFailed(
                f"params do not match the schema of {name!r}",
                errors=json.loads(exc.json(include_url=False, include_input=False)),
            ) from None
        return model.model_dump(mode="json")

    def load_module(self, path: str) -> None:
        """Import the user's jobs module; it registers its jobs on `registry` (or exposes `register`).

        Whatever goes wrong (no such module, a syntax error, an exception while it is imported
        or registers) is one `JobsModuleError` that names the module, the reason and the
        working directory: the operator's mistake is in their module, not in taskstate.
        """
        try:
            module = importlib.import_module(path)
            register = getattr(module, "register", None)
            if callable(register):
                register(self)
        except Exception as exc:
            raise JobsModuleError(
                f"cannot load the jobs module {path!r} (TASKSTATE_JOBS): {_reason(exc)}"
                f" (working directory: {os.getcwd()})"
            ) from exc


class JobsModuleError(Exception):
    """The TASKSTATE_JOBS module cannot be imported, or it failed to register its jobs."""


def _reason(exc: Exception) -> str:
    """The exception as one line: its class and message (a syntax error's file and line)."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else f"line {exc.lineno}"
        text = f"{type(exc).__name__}: {exc.msg} ({where})"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


def _has_nul(value: Any) -> bool:
    """Whether any string in `value` (key or value) holds U+0000; iterative, as params may be deep."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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
