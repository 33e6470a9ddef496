"""The embedded supervisor: claims queued tasks and runs their jobs.

A bounded pool (`MAX_CONCURRENT_TASKS`) of asyncio tasks, one per running
job (`runner.RunningJob`), each with its own cancellation event. Every state
change goes through `store.transition` guarded by this worker and attempt,
so a worker that lost a task can never move it again. The supervisor learns
of transitions made by others (a cancel, a stop, the sweeper, a reset) from
the store's commit listener and tells the job.

Background loops: claiming (woken at once when a task is queued, else a
slow poll), flushing progress and logs, and heartbeat + sweep.

A claim is a transaction: the loop looks at the queue only when something may have
become claimable since its last look (a task queued or created, a dependency completed,
an approval answered, the poll's period passed), not each time a slot frees up; and a
claim queued as a task is being created shares that creation's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from taskstate import __version__
from taskstate.config import Settings
from taskstate.core import schedules, sweep, workers
from taskstate.core.bus import Event
from taskstate.core.db import utcnow
from taskstate.core.maintenance import TableStatistics
from taskstate.core.states import State, is_terminal
from taskstate.core.store import Store
from taskstate.core.writer import TransitionRecord
from taskstate.runtime.identity import new_worker_id, system_info
from taskstate.runtime.lease import Lease
from taskstate.runtime.output import PendingOutput, write_taken
from taskstate.runtime.registry import JobRegistry
from taskstate.runtime.runner import LIVE_PROGRESS_INTERVAL, RunnerEnv, RunningJob

log = logging.getLogger(__name__)

#: How often an instance looks for due schedules (at most; TASKSTATE_POLL_SECONDS if shorter).
SCHEDULE_SECONDS = 1.0


class Supervisor:
    def __init__(
        self,
        store: Store,
        registry: JobRegistry,
        settings: Settings,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.statistics = TableStatistics(store.db)
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.lease = Lease.for_timeouts(
            orphan_after=settings.orphan_after_seconds, heartbeat=settings.heartbeat_seconds, renew=self._beat
        )
        self.env = RunnerEnv(
            store,
            registry,
            settings,
            self.worker_id,
            f"worker:{self.worker_id}",
            system_info(),
            self.lease,
            self,
        )
        self.running: dict[str, RunningJob] = {}
        #: Jobs that wait for their children: they hold no slot meanwhile.
        self.waiting: set[str] = set()
        #: Jobs whose children ended, taking a slot again before they go on (first served).
        self._returning: dict[str, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        #: Something may be claimable that the last claim did not see (see the docstring).
        self._claimable = True
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self._checks: set[asyncio.Task[None]] = set()
        self.started = False
        store.on_commit(self._on_commit)
        store.on_creating(self._on_creating)
        store.bus.add_listener(self._on_event)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        started = time.monotonic()
        await self._register()
        self.lease.renewed(started)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="taskstate-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="taskstate-heartbeat"),
            asyncio.create_task(self._flush_loop(), name="taskstate-flush"),
            asyncio.create_task(self._schedule_loop(), name="taskstate-schedules"),
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
        # A claim in flight ends first: the jobs it starts get the grace period like the
        # others, rather than being handed back after they ran.
        claiming = self._loops[0]
        _, pending = await asyncio.wait([claiming], timeout=self.settings.shutdown_grace_seconds)
        if pending:
            claiming.cancel()
        jobs = [job.task for job in self.running.values() if job.task is not None]
        if jobs:
            await asyncio.wait(jobs, timeout=self.settings.shutdown_grace_seconds)
        for job in list(self.running.values()):
            job.stop("shutdown", grace=0)
        remaining = [job.task for job in self.running.values() if job.task is not None]
        if remaining:
            await asyncio.gather(*remaining, return_exceptions=True)
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        with contextlib.suppress(Exception):
            await workers.set_state(self.store, self.worker_id, "stopped")
        self.started = False

    def wake(self) -> None:
        """Look at the queue now."""
        self._may_claim()

    def _may_claim(self) -> None:
        self._claimable = True
        self._wake.set()

    def _on_creating(self) -> None:
        if self._slots_to_claim > 0:
            self._may_claim()  # the claim joins the creation's transaction

    # -- control ---------------------------------------------------------------------------

    def _on_commit(self, records: list[TransitionRecord]) -> None:
        # Still queued at the end of the batch (not claimed in the same transaction), or a
        # dependency completed.
        last_state = {rec.task_id: rec.to_state for rec in records}
        if State.QUEUED in last_state.values() or any(
            rec.to_state == State.COMPLETED and rec.unblocks is not False for rec in records
        ):
            self._may_claim()
        for rec in records:
            if is_terminal(rec.to_state):
                parent = self.running.get(rec.task.get("parent_id") or "")
                if parent is not None:
                    parent.children.child_ended()
            job = self.running.get(rec.task_id)
            if job is None or rec.actor == self.env.actor:
                continue
            if rec.to_state == State.ORPHANED:
                # A peer's sweeper may have taken it while this instance stalled. The record
                # may also be an older attempt's, read late, of a task this instance has
                # claimed again since: the row says which.
                check = asyncio.create_task(self._check_still_ours(job))
                self._checks.add(check)
                check.add_done_callback(self._checks.discard)
            elif is_terminal(rec.to_state):
                job.stop("user", grace=self.settings.cancel_grace_seconds)
            elif rec.to_state == State.STOPPING:
                job.stop("stop", grace=self.settings.stop_grace_seconds)

    async def _check_still_ours(self, job: RunningJob) -> None:
        """Stop `job` if its task's row no longer names this worker and attempt: another
        attempt will run it, and this one must not go on repeating its side effects."""
        try:
            row = await self.store.reads.get_task_row(job.task_id)
        except Exception:
            log.warning("could not check who holds task %s", job.task_id, exc_info=True)
            return  # its next guarded write finds out
        if row is None or row["worker_id"] != self.worker_id or row["attempt"] != job.guard.attempt:
            log.warning("task %s was taken from this worker (it stalled?): stopping its job", job.task_id)
            job.lost()

    def _on_event(self, event: Event) -> None:
        """An answer given on any instance reaches the job waiting on it here."""
        if event.type != "question":
            return
        question = event.payload.get("question") or {}
        if question.get("status") in ("answered", "expired"):
            self._may_claim()  # an approval may have made a task claimable
            job = self.running.get(event.task_id)
            if job is not None:
                job.deliver_answer(str(question.get("id")), question.get("answer"))

    # -- claiming --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        looked_at = loop.time()
        while not self._stopping:
            # Cleared before looking, never after: a task queued while we claim wakes us again.
            self._wake.clear()
            if loop.time() - looked_at >= self.settings.poll_seconds:
                self._claimable = True  # a task may have come due, or a peer's word was lost
            free = self._slots_to_claim
            claimed = 0
            if free > 0 and self._claimable:
                self._claimable = False
                looked_at = loop.time()
                try:
                    # After a stall, peers may think this instance lost and would orphan at
                    # once what it claims now: beat first.
                    await self.lease.confirm()
                    rows = await self.store.claim(self.worker_id, free, starting=self._starting_types())
                    backoff = 0.1
                except Exception:
                    log.exception("claiming failed; retrying in %.1fs", backoff)
                    self._claimable = True
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                claimed = len(rows)
                for row in rows:
                    self._launch(row)
                if self._stopping:
                    break
            if claimed and claimed == free:
                self._claimable = True  # there may be more
                continue
            if self._wake.is_set():
                continue  # at once: a claim that can still join the writer's next transaction
            # With no slot free, only a freed slot (which wakes us) makes a look worth it.
            timeout = None if free <= 0 else max(0.0, looked_at + self.settings.poll_seconds - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _starting_types(self) -> list[str]:
        """Types whose job runs nothing between `preparing` and `running` (no `prepare` hook)."""
        return [spec.name for spec in self.env.registry.specs() if spec.prepare is None]

    def _launch(self, row: Mapping[str, Any]) -> None:
        job = RunningJob(self.env, row)
        self.running[job.task_id] = job
        job.task = asyncio.create_task(job.run(), name=f"taskstate-job-{job.task_id}")
        job.task.add_done_callback(functools.partial(self._release, job.task_id))

    def _release(self, task_id: str, _task: object = None) -> None:
        job = self.running.pop(task_id, None)
        self.waiting.discard(task_id)
        returning = self._returning.pop(task_id, None)
        if returning is not None:
            returning.cancel()
        if job is not None and job.hard_stop is not None:
            job.hard_stop.cancel()
        self._hand_slots_back()
        self._wake.set()

    # -- slots of jobs that wait for their children ----------------------------------------

    @property
    def free_slots(self) -> int:
        return self.settings.max_concurrent_tasks - (len(self.running) - len(self.waiting))

    @property
    def _slots_to_claim(self) -> int:
        """Free slots that no returning job is about to take back."""
        return self.free_slots - len(self._returning)

    def release(self, task_id: str) -> None:
        """A job waits for its children: its slot is free for others meanwhile."""
        self.waiting.add(task_id)
        self._wake.set()

    async def reacquire(self, task_id: str) -> None:
        """A waiting job goes on: it takes a slot again, before any new claim."""
        if task_id not in self.waiting:
            return
        returning = asyncio.get_running_loop().create_future()
        self._returning[task_id] = returning
        self._hand_slots_back()
        try:
            await returning
        finally:
            self._returning.pop(task_id, None)

    def _hand_slots_back(self) -> None:
        for task_id, returning in list(self._returning.items()):
            if self.free_slots <= 0:
                return
            if not returning.done():
                self.waiting.discard(task_id)
                returning.set_result(None)

    # -- flushing progress and logs --------------------------------------------------------

    async def _flush_loop(self) -> None:
        last_write = time.monotonic()
        while True:
            await asyncio.sleep(min(self.settings.progress_flush_seconds, LIVE_PROGRESS_INTERVAL))
            now = time.monotonic()
            write = now - last_write >= self.settings.progress_flush_seconds
            try:
                await self._flush(write=write)
            except Exception:
                log.exception("writing progress failed")
            if write:
                last_write = now

    async def _flush(self, *, write: bool) -> None:
        """Every job's pending output in one write; given back to its job if the write fails."""
        now = utcnow()
        taken: list[tuple[RunningJob, PendingOutput]] = []
        for job in list(self.running.values()):
            pending = job.take_pending(write=write, now=now)
            if pending is not None:
                taken.append((job, pending))
        if not taken:
            return
        lost = await write_taken(
            self.store, [(job.output, pending) for job, pending in taken], cap=self.settings.max_log_lines
        )
        for job, _ in taken:
            if job.task_id in lost:
                log.warning("task %s is no longer this worker's: stopping its job", job.task_id)
                job.lost()

    # -- schedules ---------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        """Fire due schedules, on every instance (each firing's task is created once)."""
        while True:
            await asyncio.sleep(min(self.settings.poll_seconds, SCHEDULE_SECONDS))
            if self._stopping:
                continue
            try:
                fired = await schedules.fire_due(self.store, actor="scheduler")
            except Exception:
                log.exception("firing schedules failed")
                continue
            if fired:
                self._may_claim()

    # -- heartbeat and sweep ---------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """One heartbeat write per instance per period, then a sweep for lost workers' tasks."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._beat()
            except Exception:
                log.exception("heartbeat failed")
                continue
            if self._stopping:
                continue  # handing our own tasks back; sweeping now would race with that
            try:
                results = await sweep.sweep(
                    self.store,
                    me=self.worker_id,
                    orphan_after=self.settings.orphan_after_seconds,
                    default_timeout=self.settings.task_timeout_seconds,
                )
            except Exception:
                log.exception("sweep failed")
                continue
            for result in results:
                if result.applied:
                    log.warning(
                        "sweeper: task %s %s -> %s", result.task.get("id"), result.from_state, result.to_state
                    )
            try:
                if await self.statistics.refresh():
                    log.info("analysed the tasks table (it changed by more than its size)")
            except Exception:
                log.exception("refreshing the tasks table's statistics failed")

    async def _beat(self) -> None:
        started = time.monotonic()
        if not await workers.heartbeat(self.store, self.worker_id):
            log.warning("this worker's row was gone (forgotten as lost): registering again")
            await self._register()
        self.lease.renewed(started)

    async def _register(self) -> None:
        await workers.register(
            self.store,
            self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            slots=self.settings.max_concurrent_tasks,
        )

    @property
    def heartbeat_lag(self) -> float:
        """Seconds since this instance's last successful heartbeat (its start)."""
        return self.lease.age
