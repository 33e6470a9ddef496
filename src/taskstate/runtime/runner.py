"""One attempt of one task: its job's lifecycle, from `preparing` to a final state.

A `RunningJob` is the supervisor's side of a `JobContext`: it moves the
task through its states (always guarded by this worker and this attempt),
keeps progress and log lines in memory until the supervisor flushes them,
persists checkpoints and questions, and decides what a stop means.

Why a job stops is recorded before it is stopped (`stop_reason`): `user`
(the task is already terminal), `timeout` (fail it), `stop` (a service that
did not shut down in time: fail it; or, if its instance shut down first, fail
it saying so), `shutdown` (hand it back to the queue), `lost` (the task was
orphaned while this instance stalled: another attempt owns it now, so nothing
more is written). A stop interrupts the job's code only: once that has
returned or raised, recording how it ended (its last lines, its final
transition) is not cut short, or work done would be recorded as not done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from taskstate.config import Settings
from taskstate.core.db import utcnow
from taskstate.core.errors import TaskstateError
from taskstate.core.nesting import too_deep, too_deep_message
from taskstate.core.states import State, is_terminal
from taskstate.core.store import Guard, Outcome, Step, Store, TransitionResult
from taskstate.runtime.asking import JobQuestions
from taskstate.runtime.children import JobChildren, Slots
from taskstate.runtime.context import (
    CheckpointTooLarge,
    ChildHandle,
    JobCancelled,
    JobContext,
    current_context,
)
from taskstate.runtime.durably import Refusal, durably
from taskstate.runtime.lease import Lease
from taskstate.runtime.output import JobOutput, PendingOutput, ProgressUpdate, write_taken
from taskstate.runtime.registry import JobRegistry, JobSpec, TaskKind
from taskstate.runtime.restoration import RestorationRefused, how_to_go_on, restoration_of
from taskstate.runtime.run_report import log_event, progress_event, run_report
from taskstate.runtime.tracebacks import format_bounded

log = logging.getLogger(__name__)

LIVE_PROGRESS_INTERVAL = 0.1


@dataclass(frozen=True)
class RunnerEnv:
    """What every running job shares: the store, the settings, who this worker is."""

    store: Store
    registry: JobRegistry
    settings: Settings
    worker_id: str
    actor: str
    system_info: dict[str, Any]
    lease: Lease
    slots: Slots


class _Stop(Refusal):
    """The task is no longer ours to move: end quietly."""


class RunningJob:
    """A claimed task whose job runs in this instance."""

    def __init__(self, env: RunnerEnv, row: Mapping[str, Any]) -> None:
        self.env = env
        self.row = row
        self.task_id: str = row["id"]
        self.guard = Guard(env.worker_id, row["attempt"])
        self.ctx = JobContext(
            task_id=self.task_id,
            task_type=row["type"],
            params=None,
            attempt=row["attempt"],
            restored_checkpoint=None,
            reporter=self,
        )
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: str | None = None
        self.hard_stop: asyncio.TimerHandle | None = None
        #: The job's code has returned or raised: only the record of its end remains.
        self.code_ended = False
        #: The instance shut down while this job ran (whatever stopped it first).
        self.shut_down = False
        self.serving = False
        #: The error this job failed its task with, if it did (for its span).
        self.failure: tuple[str, str] | None = None
        #: The state this job last put its task in (a hint for the store's fast path):
        #: `running` when the claim started it at once (no `prepare` hook).
        self.state = State(row.get("state") or State.PREPARING)
        self._last_live = 0.0
        self._live_pending = False
        self._dirty = False
        self._lease_lapses = env.lease.lapses
        self.output = JobOutput(self.task_id, env.worker_id, row["attempt"], row.get("log_seq") or 0)
        self.children = JobChildren(
            row,
            self.guard,
            env.store,
            env.registry,
            env.slots,
            actor=env.actor,
            max_params_bytes=env.settings.max_params_bytes,
        )
        self.questions = JobQuestions(self.task_id, self.guard, env.store, env.settings.max_pending_questions)
        # When this attempt entered each state, for the run report.
        self._entered: list[tuple[str, datetime]] = [("preparing", row["updated_at"])]
        started: TransitionResult | None = row.get("started")
        if started is not None and started.record is not None:
            self._entered.append(("running", started.record.at))
        if not row.get("restoring") and row["attempt"] == 1:
            self._entered.insert(0, ("queued", row["created_at"]))

    # -- control from the supervisor -------------------------------------------------------

    def stop(self, reason: str, *, grace: float) -> None:
        """Tell the job to stop now (its events fire); stop it hard after `grace` seconds."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.shut_down = self.shut_down or reason == "shutdown"
        if reason == "stop":
            self.ctx.stop_requested.set()
        else:
            self.ctx.cancelled.set()
        if self.task is None or self.task.done() or self.code_ended:
            return
        if grace <= 0:
            self.task.cancel()
        elif self.hard_stop is None:
            self.hard_stop = asyncio.get_running_loop().call_later(grace, self.task.cancel)

    def _code_has_ended(self) -> None:
        self.code_ended = True
        if self.hard_stop is not None:
            self.hard_stop.cancel()
            self.hard_stop = None

    def deliver_answer(self, question_id: str, answer: Any) -> None:
        self.questions.deliver(question_id, answer)

    # -- the lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        if not self.env.settings.tracing:
            await self._run()
            return
        from taskstate.tracing import job_span, run_outcome  # only when on: not loaded otherwise

        with job_span(self.task_id, self.row["type"], self.row["attempt"], self.env.worker_id) as span:
            try:
                await self._run()
            finally:
                span.ended(*await asyncio.shield(run_outcome(self)))

    async def _run(self) -> None:
        current_context.set(self.ctx)
        restoring = bool(self.row.get("restoring"))
        try:
            spec = self.env.registry.get(self.row["type"])
            self.ctx.params = spec.params_model.model_validate(self.row["params"])
        except TaskstateError as exc:
            await self._fail("unknown_task_type", str(exc), type(exc).__name__, restoring=restoring)
            return
        except ValidationError as exc:
            error = f"params no longer match the schema: {exc}"
            await self._fail("invalid_params", error, "ValidationError", restoring=restoring)
            return
        timeout = self.row["timeout_seconds"] or self.env.settings.task_timeout_seconds
        try:
            try:
                try:
                    async with asyncio.timeout(timeout):
                        started = await self._restoration(spec) if restoring else {}
                        result = await self._phases(spec, started)
                finally:
                    self._code_has_ended()
            except TimeoutError as exc:
                # Where the job was when its time ran out (the cancelled await) is the traceback.
                error = f"timed out after {timeout:g} s"
                await self._fail("timeout", error, "TimeoutError", traceback=format_bounded(exc))
                return
            await self._complete(result)
        except _Stop:
            return
        except JobCancelled:
            await self._after_stop()
        except asyncio.CancelledError:
            await asyncio.shield(self._after_stop())
            raise
        except RestorationRefused as exc:
            await self._fail("restoration_refused", str(exc), type(exc).__name__, restoring=True)
        except Exception as exc:
            log.info("task %s failed: %r", self.task_id, exc)
            error = str(exc) or type(exc).__name__
            await self._fail("error", error, type(exc).__name__, traceback=format_bounded(exc))

    async def _restoration(self, spec: JobSpec) -> dict[str, Any]:
        """What a re-queued task left behind (`ctx.restoration`), and how its run goes on."""
        restoration = await restoration_of(self.env.store, self.row)
        for warning in restoration.warnings:
            self.log(self.ctx, "warning", warning)
        return await how_to_go_on(self.ctx, spec, restoration)

    async def _phases(self, spec: JobSpec, started: dict[str, Any]) -> Any:
        ctx = self.ctx
        if spec.prepare is not None:
            await spec.prepare(ctx, ctx.params)
        if self.state is not State.RUNNING:  # else the claim started it (no `prepare` hook)
            await self._move(State.RUNNING, "started", started)
        ctx.lifecycle_phase = "running"
        result = await spec.run(ctx, ctx.params)
        if ctx.cancelled.is_set():
            raise JobCancelled(self.task_id)
        if self.serving:
            if not ctx.stop_requested.is_set():
                await self._move(State.STOPPING, "exited")  # the service ended by itself
            return result
        if spec.collect is not None:
            # Without a `collect`, nothing runs in between: `_complete` writes `collecting`
            # and `completed` in one transaction.
            await self._move(State.COLLECTING, "collecting")
            ctx.lifecycle_phase = "collecting"
            result = await spec.collect(ctx, result)
        return result

    async def _complete(self, result: Any) -> None:
        if too_deep(result):
            await self._fail("invalid_result", too_deep_message("the result"), "ResultTooDeep")
            return
        try:
            size = len(json.dumps(result, separators=(",", ":"), allow_nan=False).encode())
        except (TypeError, ValueError) as exc:
            await self._fail("invalid_result", f"result is not JSON: {exc}", "TypeError")
            return
        limit = self.env.settings.max_result_bytes
        if size > limit:
            error = f"result is {size} bytes; the limit is {limit}"
            await self._fail("result_too_large", error, "ResultTooLarge")
            return
        fields = {"result": result, **self._final_fields()}
        if self.state is State.RUNNING:  # no `collect` hook: both in one transaction
            fields["phase_results"] = {**fields["phase_results"], "collecting": 0.0}
            completing = Step(State.COMPLETED, "completed", fields)
            await self._move(State.COLLECTING, "collecting", then=[completing])
        else:
            await self._move(State.COMPLETED, "completed", fields)

    async def _fail(
        self,
        reason: str,
        error: str,
        error_type: str,
        *,
        restoring: bool = False,
        traceback: str | None = None,
    ) -> None:
        """Fail the task; `traceback` (bounded) is written in the same transition as `error`."""
        self.failure = (error_type, error)
        fields = {
            "error": error,
            "error_type": error_type,
            "traceback": traceback,
            "progress": self.ctx.progress_value,
            **self._final_fields(),
        }
        if restoring:
            fields["restoration_decision"] = f"failed: {error}"
        try:
            await self._move(State.FAILED, reason, fields)
        except _Stop:
            pass

    async def _after_stop(self) -> None:
        """Bookkeeping once the job stopped, by what `stop_reason` says."""
        try:
            if self.stop_reason == "shutdown":
                await self._move(State.ORPHANED, "server_restart")
                requeue = {"worker_id": None, "restoration_source": "server_restart", "restore_pending": True}
                await self._move(State.QUEUED, "server_restart", requeue)
            elif self.stop_reason == "lost":
                return  # the task is another attempt's now: nothing here is ours to write
            elif self.stop_reason == "stop" and self.shut_down:
                # `stopping` has no way back to the queue (CONTRACT §1).
                error = "the instance shut down before the service finished stopping"
                await self._fail("server_restart", error, "Shutdown")
            elif self.stop_reason == "stop":
                grace = self.env.settings.stop_grace_seconds
                await self._fail("stop_timeout", f"did not shut down within {grace:g} s", "TimeoutError")
            else:
                # Already terminal (cancelled, reset, failed by the sweeper), or the job gave up itself.
                await self._move(State.CANCELLED, "cancelled")
        except _Stop:
            pass

    def _final_fields(self) -> dict[str, Any]:
        return run_report(self.ctx, self.row, self._entered, self.output.log_seq, self.env.system_info)

    async def _move(
        self, to: State, reason: str, fields: Mapping[str, Any] | None = None, *, then: Sequence[Step] = ()
    ) -> None:
        """One of this job's own transitions (and the ones that follow it in the same
        transaction); raises `_Stop` when the task is no longer ours."""
        if not is_terminal(to):
            fields = {**(fields or {}), "heartbeat_at": utcnow()}

        async def write() -> TransitionResult:
            # The job's output first: its last lines and progress belong before the change.
            await self.flush_now()
            return await self.env.store.transition(
                self.task_id,
                to,
                reason=reason,
                actor=self.env.actor,
                guard=self.guard,
                fields=fields,
                expect_from=self.state,
                then=then,
            )

        try:
            result = await durably(self.task_id, f"-> {to}", write)
        except _Stop:
            raise
        except TaskstateError as exc:
            log.info("task %s: -> %s not applied: %s", self.task_id, to, exc)
            raise _Stop from exc
        except Exception:
            log.exception("task %s: giving up on writing %s", self.task_id, to)
            raise _Stop from None
        if result.outcome in (Outcome.REFUSED, Outcome.NOT_OWNER):
            self.ctx.cancelled.set()
            raise _Stop
        for applied in [result, *result.then]:
            self.state = State(applied.to_state)
            if applied.record is not None:
                self._entered.append((applied.to_state, applied.record.at))
        if len(result.then) < len(then):
            log.error("task %s: only %d of the steps after -> %s applied", self.task_id, len(result.then), to)
            raise _Stop

    # -- the JobContext's reporter ---------------------------------------------------------

    def report_progress(self, ctx: JobContext) -> None:
        self._dirty = True
        now = time.monotonic()
        if now - self._last_live >= LIVE_PROGRESS_INTERVAL:
            self._publish_progress(now)
        else:
            self._live_pending = True

    def _publish_progress(self, now: float) -> None:
        self._last_live = now
        self._live_pending = False
        self.env.store.publish(progress_event(self.task_id, self.ctx))

    def log(self, ctx: JobContext, level: str, message: str) -> None:
        line = self.output.add_line(utcnow(), level, message)
        self.env.store.publish(log_event(self.task_id, line))

    async def save_checkpoint(self, ctx: JobContext, data: Any) -> None:
        if too_deep(data):
            raise ValueError(too_deep_message("the checkpoint"))
        try:
            text = json.dumps(data, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"checkpoint is not JSON: {exc}") from exc
        size = len(text.encode())
        limit = self.env.settings.max_checkpoint_bytes
        if size > limit:
            raise CheckpointTooLarge(f"checkpoint is {size} bytes; the limit is {limit}")
        saved = await durably(
            self.task_id,
            "saving a checkpoint",
            lambda: self.env.store.save_checkpoint(self.task_id, self.guard, text),
        )
        if not saved:
            ctx.cancelled.set()
            raise JobCancelled(self.task_id)

    async def mark_serving(self, ctx: JobContext, endpoint: str | None, info: Any) -> None:
        spec = self.env.registry.get(self.row["type"])
        if spec.kind is not TaskKind.SERVICE:
            raise TypeError(f"{spec.name} is a batch job: only service jobs can be serving")
        if self.serving:
            return
        if too_deep(info):
            raise ValueError(too_deep_message("the service info"))
        try:
            size = len(json.dumps(info).encode())
        except (TypeError, ValueError) as exc:
            raise TypeError(f"service info is not JSON: {exc}") from exc
        if size > 64 * 1024:
            raise ValueError(f"service info is {size} bytes; the limit is 65536")
        try:
            await self._move(State.SERVING, "serving", {"endpoint": endpoint, "service_info": info})
        except _Stop:
            raise JobCancelled(self.task_id) from None
        self.serving = True
        ctx.lifecycle_phase = "serving"

    async def spawn(
        self, ctx: JobContext, task_type: str, params: dict[str, Any] | None, **how: Any
    ) -> ChildHandle:
        return await self.children.spawn(ctx, task_type, params, **how)

    async def wait(
        self, ctx: JobContext, children: Sequence[ChildHandle], derive_progress: bool
    ) -> list[Any]:
        try:
            return await self.children.wait(ctx, children, derive_progress)
        finally:
            await self.confirm_lease(ctx)

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
        return await self.questions.ask(ctx, question, choices, context, key, timeout_seconds, default)

    # -- flushing --------------------------------------------------------------------------

    def take_pending(self, *, write: bool, now: datetime) -> PendingOutput | None:
        """Publish a held-back progress event; hand over what is due to be written."""
        if self._live_pending:
            self._publish_progress(time.monotonic())
        if not write:
            return None
        if self._dirty:
            self._dirty = False
            ctx = self.ctx
            self.output.set_progress(
                ProgressUpdate(
                    ctx.progress_value,
                    ctx.phase,
                    ctx.message,
                    ctx.items_processed,
                    ctx.items_failed,
                    now,
                    list(ctx.waiting_for),
                )
            )
        return self.output.take()

    async def flush_now(self) -> None:
        """Write this job's progress and log lines (before one of its transitions).

        Raises if the write failed (what it took is kept for the next one), and
        `_Stop` if the task is no longer this attempt's.
        """
        await self.output.settled()  # what the periodic flush took is stored, or back
        pending = self.take_pending(write=True, now=utcnow())
        if pending is None:
            return
        lost = await write_taken(
            self.env.store, [(self.output, pending)], cap=self.env.settings.max_log_lines
        )
        if lost:
            self.lost()
            raise _Stop

    async def confirm_lease(self, ctx: JobContext) -> None:
        """Return at once while the instance's lease has held since this job last looked;
        after a stall, renew it and raise `JobCancelled` unless the task's row still names
        this worker and attempt."""
        lease = self.env.lease
        if lease.fresh and lease.lapses == self._lease_lapses:
            return
        log.warning("task %s: this instance's lease lapsed (it stalled?): confirming", self.task_id)
        await lease.confirm()
        self._lease_lapses = lease.lapses
        row = await durably(self.task_id, "a read", lambda: self.env.store.reads.get_task_row(self.task_id))
        if row is None or row["worker_id"] != self.env.worker_id or row["attempt"] != self.guard.attempt:
            self.lost()
            raise JobCancelled(self.task_id)

    def lost(self) -> None:
        """The task was taken from this attempt (orphaned, perhaps running elsewhere): stop."""
        self.stop("lost", grace=self.env.settings.cancel_grace_seconds)
