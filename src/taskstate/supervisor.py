"""The embedded supervisor: claims queued tasks and runs their jobs.

A bounded pool (`MAX_CONCURRENT_TASKS`) of asyncio tasks, one per running
job, each carrying its own cancellation event. Every state change goes
through `store.transition` with a `Guard` (this worker, this attempt), so a
worker that lost a task can never move it again. A job that finishes after
its task was cancelled finds its transitions refused; that is correct, and
not an error for the job.

Why a job stops is recorded before it is stopped (`_cancel_reasons`):
`user` (the task is already `cancelled`), `timeout` (fail it), `shutdown`
(hand it back to the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from taskstate import __version__
from taskstate.bus import Event
from taskstate.config import Settings
from taskstate.db import utcnow
from taskstate.errors import TaskstateError
from taskstate.jobs import CheckpointTooLarge, JobCancelled, JobContext, JobRegistry, JobSpec
from taskstate.states import State, is_terminal
from taskstate.store import Guard, Outcome, ProgressUpdate, Store
from taskstate.writer import TransitionRecord

log = logging.getLogger(__name__)

LIVE_PROGRESS_INTERVAL = 0.1


@dataclass
class RunningJob:
    task_id: str
    guard: Guard
    ctx: JobContext
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    hard_stop: asyncio.TimerHandle | None = None
    last_live: float = 0.0
    live_pending: bool = False
    dirty: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Supervisor:
    def __init__(
        self,
        store: Store,
        registry: JobRegistry,
        settings: Settings,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.actor = f"worker:{self.worker_id}"
        self.running: dict[str, RunningJob] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self.started = False
        self.last_heartbeat = time.monotonic()
        store.on_commit(self._on_commit)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.register_worker(
            self.worker_id, host=socket.gethostname(), pid=os.getpid(), version=__version__
        )
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="taskstate-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="taskstate-heartbeat"),
            asyncio.create_task(self._flush_loop(), name="taskstate-progress"),
        ]
        self.started = True

    @property
    def alive(self) -> bool:
        return self.started and all(not t.done() for t in self._loops)

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish within the grace period, hand back the rest."""
        if not self.started:
            return
        self._stopping = True
        self._wake.set()
        jobs = [r.task for r in self.running.values() if r.task is not None]
        if jobs:
            await asyncio.wait(jobs, timeout=self.settings.shutdown_grace_seconds)
        for job in list(self.running.values()):
            self._stop_job(job, "shutdown", grace=0)
        remaining = [r.task for r in self.running.values() if r.task is not None]
        if remaining:
            await asyncio.gather(*remaining, return_exceptions=True)
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self._flush_progress()
        with contextlib.suppress(Exception):
            await self.store.set_worker_state(self.worker_id, "stopped")
        self.started = False

    def wake(self) -> None:
        self._wake.set()

    # -- control ---------------------------------------------------------------------------

    def _on_commit(self, records: list[TransitionRecord]) -> None:
        for rec in records:
            if rec.to_state == State.QUEUED:
                self._wake.set()
            job = self.running.get(rec.task_id)
            if job is not None and rec.actor != self.actor and is_terminal(rec.to_state):
                self._stop_job(job, "user", grace=self.settings.cancel_grace_seconds)

    def cancel_local(self, task_id: str) -> None:
        """Fire a job's cancellation event now (the task is already terminal in the database)."""
        job = self.running.get(task_id)
        if job is not None:
            self._stop_job(job, "user", grace=self.settings.cancel_grace_seconds)

    def stop_all_local(self) -> None:
        """Stop every job this instance runs (emergency reset: their tasks are already terminal)."""
        for job in list(self.running.values()):
            self._stop_job(job, "user", grace=self.settings.cancel_grace_seconds)

    def _stop_job(self, job: RunningJob, reason: str, *, grace: float) -> None:
        if job.cancel_reason is None:
            job.cancel_reason = reason
        job.ctx.cancelled.set()
        if job.task is None or job.task.done():
            return
        if grace <= 0:
            job.task.cancel()
        elif job.hard_stop is None:
            job.hard_stop = asyncio.get_running_loop().call_later(grace, job.task.cancel)

    # -- claiming --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            free = self.settings.max_concurrent_tasks - len(self.running)
            claimed = 0
            if free > 0:
                try:
                    rows = await self.store.claim(self.worker_id, free)
                    backoff = 0.1
                except Exception:
                    log.exception("claiming failed; retrying in %.1fs", backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                claimed = len(rows)
                for row in rows:
                    self._launch(row)
                if self._stopping:
                    break
            if claimed and claimed == free:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_seconds)

    def _launch(self, row: Mapping[str, Any]) -> None:
        guard = Guard(self.worker_id, row["attempt"])
        ctx = JobContext(
            task_id=row["id"],
            task_type=row["type"],
            params=_placeholder_params,
            attempt=row["attempt"],
            restored_checkpoint=None,
            reporter=self,
        )
        job = RunningJob(row["id"], guard, ctx)
        self.running[row["id"]] = job
        job.task = asyncio.create_task(self._run(job, row), name=f"taskstate-job-{row['id']}")
        job.task.add_done_callback(functools.partial(self._release, row["id"]))

    def _release(self, task_id: str, _task: object = None) -> None:
        job = self.running.pop(task_id, None)
        if job is not None and job.hard_stop is not None:
            job.hard_stop.cancel()
        self._wake.set()

    # -- running one job -------------------------------------------------------------------

    async def _run(self, job: RunningJob, row: Mapping[str, Any]) -> None:
        ctx = job.ctx
        restoring = bool(row.get("restoring"))
        try:
            spec = self.registry.get(row["type"])
            ctx.params = spec.params_model.model_validate(row["params"])
        except TaskstateError as exc:
            await self._fail(job, "unknown_task_type", str(exc), type(exc).__name__, restoring=restoring)
            return
        except ValidationError as exc:
            reason = "invalid_params"
            await self._fail(
                job,
                reason,
                f"params no longer match the schema: {exc}",
                "ValidationError",
                restoring=restoring,
            )
            return
        if restoring:
            job.extra = self._restoration(ctx, row)
        timeout = row["timeout_seconds"] or self.settings.task_timeout_seconds
        try:
            try:
                async with asyncio.timeout(timeout):
                    result = await self._phases(job, spec)
            except TimeoutError:
                await self._fail(job, "timeout", f"timed out after {timeout:g} s", "TimeoutError")
                return
            if result is _STOP:
                return
            await self._complete(job, result)
        except JobCancelled:
            await self._after_stop(job)
        except asyncio.CancelledError:
            await asyncio.shield(self._after_stop(job))
            raise
        except Exception as exc:
            log.info("task %s failed: %r", job.task_id, exc)
            await self._fail(job, "error", str(exc) or type(exc).__name__, type(exc).__name__)

    def _restoration(self, ctx: JobContext, row: Mapping[str, Any]) -> dict[str, Any]:
        """Validate what a re-queued task left behind, and decide how to run it again.

        The type and params were checked by the caller (a mismatch fails the task);
        here an unreadable checkpoint means starting fresh, with a warning on the task.
        """
        raw = row["checkpoint"]
        if raw is None:
            return {"restoration_decision": "proceed: no checkpoint, starting from the beginning"}
        try:
            ctx.restored_checkpoint = json.loads(raw)
        except ValueError as exc:
            warning = f"restored without its checkpoint, which is unreadable ({exc})"
            log.warning("task %s: %s", ctx.task_id, warning)
            ctx.message = warning
            return {"restoration_decision": f"fresh: {warning}", "message": warning}
        return {"restoration_decision": "proceed: from the last checkpoint"}

    async def _phases(self, job: RunningJob, spec: JobSpec) -> Any:
        ctx = job.ctx
        if spec.prepare is not None:
            await spec.prepare(ctx, ctx.params)
        if not await self._move(job, State.RUNNING, "started", job.extra):
            return _STOP
        ctx.lifecycle_phase = "running"
        result = await spec.run(ctx, ctx.params)
        if ctx.cancelled.is_set():
            raise JobCancelled(job.task_id)
        if not await self._move(job, State.COLLECTING, "collecting"):
            return _STOP
        ctx.lifecycle_phase = "collecting"
        if spec.collect is not None:
            result = await spec.collect(ctx, result)
        return result

    async def _complete(self, job: RunningJob, result: Any) -> None:
        try:
            size = len(json.dumps(result, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            await self._fail(job, "invalid_result", f"result is not JSON: {exc}", "TypeError")
            return
        if size > self.settings.max_result_bytes:
            await self._fail(
                job,
                "result_too_large",
                f"result is {size} bytes; the limit is {self.settings.max_result_bytes}",
                "ResultTooLarge",
            )
            return
        await self._flush_progress()
        await self._move(job, State.COMPLETED, "completed", {"result": result, **self._progress_fields(job)})

    async def _fail(
        self, job: RunningJob, reason: str, error: str, error_type: str, *, restoring: bool = False
    ) -> None:
        await self._flush_progress()
        fields = {"error": error, "error_type": error_type, **self._progress_fields(job, final=False)}
        if restoring:
            fields["restoration_decision"] = f"failed: {error}"
        await self._move(job, State.FAILED, reason, fields)

    async def _after_stop(self, job: RunningJob) -> None:
        """Bookkeeping once a job stopped for `job.cancel_reason`."""
        reason = job.cancel_reason
        if reason == "shutdown":
            await self._hand_back(job)
        elif reason == "timeout":
            await self._fail(job, "timeout", "stopped: no progress within its timeout", "TimeoutError")
        else:
            # The task is already terminal (cancelled, reset) or cancelled by the job itself.
            await self._move(job, State.CANCELLED, "cancelled")

    async def _hand_back(self, job: RunningJob) -> None:
        moved = await self._move(job, State.ORPHANED, "server_restart")
        if moved:
            await self._move(
                job,
                State.QUEUED,
                "server_restart",
                {"worker_id": None, "restoration_source": "server_restart", "restore_pending": True},
            )

    def _progress_fields(self, job: RunningJob, final: bool = True) -> dict[str, Any]:
        ctx = job.ctx
        return {
            "phase": ctx.phase,
            "message": ctx.message,
            "items_processed": ctx.items_processed,
            "items_failed": ctx.items_failed,
            **({} if final else {"progress": ctx.progress_value}),
        }

    async def _move(
        self,
        job: RunningJob,
        to: State,
        reason: str,
        fields: Mapping[str, Any] | None = None,
    ) -> bool:
        """One of this job's own transitions; False when the task is no longer ours to move."""
        delay = 0.1
        deadline = time.monotonic() + 30
        if not is_terminal(to):
            fields = {**(fields or {}), "heartbeat_at": utcnow()}
        while True:
            try:
                result = await self.store.transition(
                    job.task_id,
                    to,
                    reason=reason,
                    actor=self.actor,
                    guard=job.guard,
                    fields=fields,
                )
            except TaskstateError as exc:
                log.info("task %s: %s -> %s not applied: %s", job.task_id, "?", to, exc)
                return False
            except Exception:
                if time.monotonic() > deadline:
                    log.exception("task %s: giving up on %s", job.task_id, to)
                    return False
                log.warning("task %s: writing %s failed; retrying", job.task_id, to, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if result.outcome in (Outcome.REFUSED, Outcome.NOT_OWNER):
                job.ctx.cancelled.set()
                return False
            return True

    # -- progress and checkpoints (the JobContext's reporter) ------------------------------

    def report_progress(self, ctx: JobContext) -> None:
        job = self.running.get(ctx.task_id)
        if job is None:
            return
        job.dirty = True
        now = time.monotonic()
        if now - job.last_live >= LIVE_PROGRESS_INTERVAL:
            self._publish_progress(job, now)
        else:
            job.live_pending = True

    def _publish_progress(self, job: RunningJob, now: float) -> None:
        ctx = job.ctx
        job.last_live = now
        job.live_pending = False
        self.store.bus.publish(
            Event.of(
                {
                    "type": "progress",
                    "task_id": job.task_id,
                    "progress": ctx.progress_value,
                    "phase": ctx.phase,
                    "message": ctx.message,
                    "items_processed": ctx.items_processed,
                    "items_failed": ctx.items_failed,
                }
            )
        )

    async def save_checkpoint(self, ctx: JobContext, data: Any) -> None:
        job = self.running.get(ctx.task_id)
        if job is None:
            raise JobCancelled(ctx.task_id)
        try:
            text = json.dumps(data, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"checkpoint is not JSON: {exc}") from exc
        size = len(text.encode())
        if size > self.settings.max_checkpoint_bytes:
            raise CheckpointTooLarge(
                f"checkpoint is {size} bytes; the limit is {self.settings.max_checkpoint_bytes}"
            )
        if not await self.store.save_checkpoint(ctx.task_id, job.guard, text):
            ctx.cancelled.set()
            raise JobCancelled(ctx.task_id)

    async def _flush_loop(self) -> None:
        last_write = time.monotonic()
        while True:
            await asyncio.sleep(min(self.settings.progress_flush_seconds, LIVE_PROGRESS_INTERVAL))
            now = time.monotonic()
            write = now - last_write >= self.settings.progress_flush_seconds
            try:
                await self._flush_progress(write=write)
            except Exception:
                log.exception("writing progress failed")
            if write:
                last_write = now

    async def _flush_progress(self, *, write: bool = True) -> None:
        now_mono = time.monotonic()
        now = utcnow()
        updates = []
        for job in list(self.running.values()):
            if job.live_pending:
                self._publish_progress(job, now_mono)
            if job.dirty and write:
                job.dirty = False
                ctx = job.ctx
                updates.append(
                    ProgressUpdate(
                        job.task_id,
                        self.worker_id,
                        ctx.progress_value,
                        ctx.phase,
                        ctx.message,
                        ctx.items_processed,
                        ctx.items_failed,
                        now,
                    )
                )
        await self.store.write_progress(updates)

    async def _heartbeat_loop(self) -> None:
        """One heartbeat write per instance per period, then a sweep for lost workers' tasks."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self.store.heartbeat(self.worker_id)
                self.last_heartbeat = time.monotonic()
            except Exception:
                log.exception("heartbeat failed")
                continue
            if self._stopping:
                continue  # handing our own tasks back; sweeping now would race with that
            try:
                results = await self.store.sweep(
                    me=self.worker_id,
                    orphan_after=self.settings.orphan_after_seconds,
                    default_timeout=self.settings.task_timeout_seconds,
                )
                for result in results:
                    if result.applied:
                        log.warning(
                            "sweeper: task %s %s -> %s",
                            result.task.get("id"),
                            result.from_state,
                            result.to_state,
                        )
            except Exception:
                log.exception("sweep failed")

    @property
    def heartbeat_lag(self) -> float:
        """Seconds since this instance's last successful heartbeat."""
        return time.monotonic() - self.last_heartbeat


class _Placeholder:
    """Stands in for params until the job's model has validated them."""


_placeholder_params: Any = _Placeholder()
_STOP: Any = object()
