"""Job types used only by the tests, registered beside the demo jobs.

In-process tests steer them through `GATES` (an event per task name); the
subprocess tests use the sleeping ones, with TASKSTATE_JOBS=tests.jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskstate.jobs import JobContext, JobRegistry

#: Events the in-process tests set to let a `test.gate` job go on, by task name.
GATES: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
#: (task_id, attempt, worker phase) of every run of `test.record`, in order.
RUNS: list[tuple[str, int]] = []
#: The tags of `test.fail` tasks with `once` that failed already (their retry completes).
FAILED_ONCE: set[str] = set()


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="allow")


class GateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gate: str


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(30, ge=0)


class SizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=0)


class ReportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gate: str
    lines: int = Field(5, ge=0)
    progress: float = Field(50, ge=0, le=100)


class JournalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journal: str
    steps: int = Field(20, ge=1)
    delay: float = Field(0.1, ge=0)


class TreeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(2, ge=0)
    width: int = Field(2, ge=1)
    gate: str = "tree"


class ParentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    children: int = Field(3, ge=0)
    seconds: float = Field(3, ge=0)


class SoakParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journal: str
    mode: str = Field(pattern="^(work|ask|checkpoint|fail|cancel|serve)$")
    steps: int = Field(10, ge=1)
    delay: float = Field(0.1, ge=0)


class ChatterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: int = Field(50, ge=0)
    delay: float = Field(0.05, ge=0)
    fail: bool = False


class DepthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(ge=0)


class FailureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(0, ge=0, le=500)  #: frames of `descend_and_raise` above the raise
    message_size: int = Field(0, ge=0)  #: characters of filler in the exception's message
    tag: str = ""  #: said in the message, so that concurrent failures tell theirs apart
    once: bool = False  #: fail only the first run of this tag (its retry completes)


def descend_and_raise(depth: int, message: str) -> None:
    """Recurses `depth` times, then raises (a deep stack, for the traceback tests)."""
    if depth > 0:
        descend_and_raise(depth - 1, message)
        return
    raise ValueError(message)  # the raising line the tests look for


def nested_list(depth: int) -> Any:
    """`[[...]]`, `depth` levels deep (built without recursion)."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value if depth else 0


class ProgressParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    updates: int = Field(1000, ge=1)


async def _sleep_in_prepare(ctx: JobContext, params: SleepParams) -> None:
    if ctx.attempt == 1:
        await asyncio.sleep(params.seconds)


async def _sleep_in_collect(ctx: JobContext, result: Any) -> Any:
    if ctx.attempt == 1:
        await asyncio.sleep(ctx.params.seconds)
    return result


async def _nothing(ctx: JobContext, params: Any) -> None:
    return None


async def _keep_result(ctx: JobContext, result: Any) -> Any:
    return result


async def wait_for_gate(ctx: JobContext, gate: str) -> None:
    """Until the test opens `gate`; raises `JobCancelled` if the task is cancelled first."""
    waiter = asyncio.ensure_future(GATES[gate].wait())
    cancelled = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        await asyncio.wait({waiter, cancelled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        cancelled.cancel()
    ctx.raise_if_cancelled()


class Journal:
    """Appends what a job does to a file the service knows nothing of (one line per write:
    atomic with O_APPEND, whichever process writes)."""

    def __init__(self, path: str, ctx: JobContext) -> None:
        self.path = path
        self.entry = {"task": ctx.task_id, "attempt": ctx.attempt, "pid": os.getpid()}

    def note(self, event: str, step: int = 0, **more: Any) -> None:
        line = json.dumps({**self.entry, "event": event, "step": step, "at": time.time(), **more})
        with open(self.path, "a") as out:
            out.write(line + "\n")


def register(registry: JobRegistry) -> None:
    @registry.job("test.echo", params=EchoParams)
    async def echo(ctx: JobContext, params: EchoParams) -> Any:
        """Returns its params as its result."""
        return params.model_dump()

    @registry.job("test.gate", params=GateParams)
    async def gate(ctx: JobContext, params: GateParams) -> str:
        """Waits (cancellably) until the test opens its gate."""
        await wait_for_gate(ctx, params.gate)
        return params.gate

    @registry.job("test.report", params=ReportParams)
    async def report(ctx: JobContext, params: ReportParams) -> int:
        """Logs `lines` lines and reports `progress`, then waits (cancellably) for its gate."""
        for i in range(1, params.lines + 1):
            ctx.log(f"{ctx.task_id} line {i}")
        ctx.progress(params.progress, f"at {params.progress:g}", items_processed=params.lines)
        await wait_for_gate(ctx, params.gate)
        return params.lines

    @registry.job("test.journal", params=JournalParams)
    async def journal(ctx: JobContext, params: JournalParams) -> int:
        """Works in steps, and appends each to a file outside the service (a side effect the
        service cannot undo): the tests compare it with what the service recorded."""

        def note(event: str, step: int = 0) -> None:
            entry = {"task": ctx.task_id, "attempt": ctx.attempt, "pid": os.getpid(), "event": event}
            with open(params.journal, "a") as out:
                out.write(json.dumps({**entry, "step": step, "at": time.time()}) + "\n")

        note("start")
        for step in range(1, params.steps + 1):
            await ctx.sleep(params.delay)
            note("step", step)
            ctx.log(f"attempt {ctx.attempt} step {step}")
            ctx.progress(100 * step / params.steps, f"step {step}", items_processed=step)
        note("end", params.steps)
        return params.steps

    @registry.job("test.soak", params=SoakParams)
    async def soak(ctx: JobContext, params: SoakParams) -> dict[str, Any]:
        """Every kind of work the soak test mixes (see tests/test_soak.py), each step noted in
        a journal outside the service before it is logged: what the job itself did."""
        journal = Journal(params.journal, ctx)
        journal.note("start")
        answer = None
        first = 1
        if params.mode == "ask":
            answer = await ctx.ask("go on?", choices=["yes", "no"], key="go")
            journal.note("answer", answer=answer)
        if params.mode == "checkpoint" and isinstance(ctx.restored_checkpoint, dict):
            first = int(ctx.restored_checkpoint["n"]) + 1
        for step in range(first, params.steps + 1):
            await ctx.sleep(params.delay)
            if params.mode == "checkpoint":
                await ctx.checkpoint({"n": step})
            journal.note("step", step)
            ctx.log(f"run {ctx.attempt}.{os.getpid()} step {step}")
            ctx.progress(100 * step / params.steps, f"step {step}", items_processed=step)
            if params.mode == "fail" and step == 3:
                journal.note("fail", step)
                raise RuntimeError("soak failure")
        journal.note("end", params.steps)
        return {"steps": params.steps, "from": first, "answer": answer}

    @registry.job("test.soak_service", params=SoakParams, kind="service")
    async def soak_service(ctx: JobContext, params: SoakParams) -> dict[str, Any]:
        """A service for the soak test: logs a line, serves until stopped, logs another."""
        journal = Journal(params.journal, ctx)
        journal.note("start")
        journal.note("step", 1)
        ctx.log(f"run {ctx.attempt}.{os.getpid()} step 1")
        await ctx.serving(endpoint="soak://service")
        await ctx.until_stopped()
        if ctx.cancelled.is_set():
            # Cancelled, or taken from this attempt while its instance stalled: it cleans up
            # what is its own, and does no more of the task's work.
            journal.note("cleanup")
            ctx.raise_if_cancelled()
        journal.note("step", 2)
        ctx.log(f"run {ctx.attempt}.{os.getpid()} step 2")
        journal.note("end", 2)
        return {"steps": 2}

    @registry.job("test.tree", params=TreeParams)
    async def tree(ctx: JobContext, params: TreeParams) -> int:
        """Spawns `width` children, each a tree one level shallower, and waits for them; a leaf
        waits (cancellably) for its gate."""
        if params.depth == 0:
            await wait_for_gate(ctx, params.gate)
            return 1
        child = {"depth": params.depth - 1, "width": params.width, "gate": params.gate}
        for n in range(params.width):
            await ctx.spawn("test.tree", child, key=f"c{n}", name=f"depth {params.depth - 1} #{n}")
        leaves: list[int] = await ctx.wait_all()
        return sum(leaves)

    @registry.job("test.parent", params=ParentParams)
    async def parent(ctx: JobContext, params: ParentParams) -> dict[str, Any]:
        """Spawns `children` sleeping children and waits for them; logs what a restored run
        found (`ctx.restoration`) and which children it got from its spawns."""
        if ctx.restoration is not None:
            found = ctx.restoration
            ctx.log(f"restored: children {[c.id for c in found.children]} open {found.open_children}")
        spawned = []
        for n in range(params.children):
            child = {"seconds": params.seconds, "steps": 3}
            handle = await ctx.spawn("demo.sleep", child, key=f"child {n}")
            spawned.append(handle.id)
        ctx.log(f"spawned {spawned}")
        await ctx.wait_all()
        return {"children": spawned}

    @registry.job("test.stubborn", params=SleepParams)
    async def stubborn(ctx: JobContext, params: SleepParams) -> None:
        """Ignores its cancellation event: only the hard stop ends it."""
        await asyncio.sleep(params.seconds)

    @registry.job("test.record", params=EchoParams)
    async def record(ctx: JobContext, params: EchoParams) -> None:
        """Records that it ran (to catch a task run twice)."""
        RUNS.append((ctx.task_id, ctx.attempt))
        await asyncio.sleep(0.005)

    @registry.job("test.big_result", params=SizeParams)
    async def big_result(ctx: JobContext, params: SizeParams) -> str:
        """Returns a string of `size` characters."""
        return "x" * params.size

    @registry.job("test.checkpoint", params=SizeParams)
    async def checkpoint(ctx: JobContext, params: SizeParams) -> None:
        """Checkpoints a string of `size` characters."""
        await ctx.checkpoint("x" * params.size)

    @registry.job("test.deep_result", params=DepthParams)
    async def deep_result(ctx: JobContext, params: DepthParams) -> Any:
        """Returns lists nested `depth` levels deep."""
        return nested_list(params.depth)

    @registry.job("test.deep_checkpoint", params=DepthParams)
    async def deep_checkpoint(ctx: JobContext, params: DepthParams) -> None:
        """Checkpoints lists nested `depth` levels deep."""
        await ctx.checkpoint(nested_list(params.depth))

    @registry.job("test.not_json", params=EchoParams)
    async def not_json(ctx: JobContext, params: EchoParams) -> Any:
        """Returns something that is not JSON."""
        return {1, 2, 3}

    @registry.job("test.progress", params=ProgressParams)
    async def progress(ctx: JobContext, params: ProgressParams) -> int:
        """Reports progress `updates` times as fast as it can."""
        for i in range(1, params.updates + 1):
            ctx.progress(100 * i / params.updates, f"update {i}", items_processed=i)
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.3)
        return params.updates

    @registry.job("test.fail", params=FailureParams)
    async def fail(ctx: JobContext, params: FailureParams) -> None:
        """Raises a ValueError from `depth` frames down, its message tagged and padded."""
        await asyncio.sleep(0.05)
        if params.once and params.tag in FAILED_ONCE:
            return
        FAILED_ONCE.add(params.tag)
        descend_and_raise(params.depth, f"failure {params.tag} " + "m" * params.message_size)

    @registry.job("test.crash", params=EchoParams)
    async def crash(ctx: JobContext, params: EchoParams) -> None:
        """Kills its own server process, every time (a job that takes its worker down)."""
        os.kill(os.getpid(), signal.SIGKILL)

    @registry.job("test.stubborn_service", params=EchoParams, kind="service")
    async def stubborn_service(ctx: JobContext, params: EchoParams) -> None:
        """Comes up, then ignores the request to stop."""
        await ctx.serving(endpoint="test://stubborn")
        await asyncio.sleep(3600)

    @registry.job("test.gated_shutdown", params=GateParams, kind="service")
    async def gated_shutdown(ctx: JobContext, params: GateParams) -> str:
        """Comes up; once asked to stop, shuts down when the test opens its gate."""
        await ctx.serving()
        await ctx.until_stopped()
        await GATES[params.gate].wait()
        ctx.log("shut down")  # a line to flush before its last transition, as most jobs have
        return "shut down"

    @registry.job("test.failing_shutdown", params=EchoParams, kind="service")
    async def failing_shutdown(ctx: JobContext, params: EchoParams) -> None:
        """Comes up; its shutdown raises."""
        await ctx.serving()
        await ctx.until_stopped()
        raise RuntimeError("shutdown went wrong")

    @registry.job("test.logger", params=ProgressParams)
    async def logger(ctx: JobContext, params: ProgressParams) -> int:
        """Writes `updates` lines with ctx.log, and two through the standard logging module."""
        for i in range(1, params.updates + 1):
            ctx.log(f"line {i}", level="debug" if i % 2 else "info")
        logging.getLogger("userjob").warning("from logging: %s", "a warning")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("userjob.sub").exception("with a traceback")
        return params.updates

    @registry.job("test.chatter", params=ChatterParams)
    async def chatter(ctx: JobContext, params: ChatterParams) -> int:
        """Logs `lines` lines naming its task, `delay` apart (then fails, if asked to)."""
        for i in range(1, params.lines + 1):
            ctx.log(f"{ctx.task_id} line {i}")
            ctx.progress(100 * i / max(1, params.lines), f"line {i}")
            await ctx.sleep(params.delay)
        if params.fail:
            raise RuntimeError("chatter failed on purpose")
        return params.lines

    @registry.job("test.ask_two", params=EchoParams)
    async def ask_two(ctx: JobContext, params: EchoParams) -> list[Any]:
        """Asks two questions at once and completes with both answers."""
        first = ctx.ask("first?", choices=["yes", "no"], key="first")
        second = ctx.ask("second?", choices=["1", "2"], key="second")
        return list(await asyncio.gather(first, second))

    registry.job("test.slow_prepare", params=SleepParams, prepare=_sleep_in_prepare)(_nothing)
    registry.job("test.slow_collect", params=SleepParams, collect=_sleep_in_collect)(_nothing)
    # A no-op with both hooks: each of its transitions is a commit of its own (a job
    # without hooks shares them: claim with running, collecting with completed).
    registry.job("test.hooked_noop", params=EchoParams, prepare=_nothing, collect=_keep_result)(_nothing)
