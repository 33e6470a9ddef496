"""The built-in demo job types of CONTRACT §4, on with TASKSTATE_DEMO_JOBS=1.

They exist so that a new user, the UI and the tests can see every state.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskstate.runtime.context import ChildFailed, JobContext
from taskstate.runtime.registry import JobRegistry, NoParams, TaskKind


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(5, ge=0, le=86_400, description="Total time to sleep.")
    steps: int = Field(10, ge=1, le=10_000, description="Progress reports along the way.")


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field("demo failure", max_length=10_000, description="The error to raise.")


class CountParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int = Field(20, ge=0, le=1_000_000, description="Count up to this number.")
    delay: float = Field(0.5, ge=0, le=3600, description="Seconds between counts.")


class AskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field("Proceed?", min_length=1, max_length=2000)
    choices: list[str] = Field(default_factory=lambda: ["yes", "no"], max_length=50)
    timeout_seconds: float | None = Field(None, gt=0, le=7 * 86_400, description="Then the default answer.")
    default: str | None = Field(None, max_length=2000, description="The answer when the timeout passes.")


class FanoutParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    children: int = Field(3, ge=0, le=100, description="How many demo.sleep children to spawn.")
    seconds: float = Field(1, ge=0, le=86_400, description="How long each child sleeps.")


class PlanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(1, ge=0, le=86_400, description="How long each step sleeps.")


class DemoFailure(RuntimeError):
    """The error demo.fail raises on purpose."""


def register(registry: JobRegistry) -> None:
    @registry.job("demo.noop", params=NoParams)
    async def noop(ctx: JobContext, params: NoParams) -> None:
        """Does nothing: every phase, at once (for benchmarks)."""

    @registry.job("demo.sleep", params=SleepParams)
    async def sleep(ctx: JobContext, params: SleepParams) -> dict[str, Any]:
        """Sleeps in steps, reporting progress at each; honours cancellation between steps."""
        for step in range(1, params.steps + 1):
            await ctx.sleep(params.seconds / params.steps)
            ctx.log(f"step {step} of {params.steps}")
            ctx.progress(
                100 * step / params.steps,
                f"step {step} of {params.steps}",
                items_processed=step,
                phase="sleeping",
            )
        return {"slept": params.seconds, "steps": params.steps}

    @registry.job("demo.fail", params=FailParams)
    async def fail(ctx: JobContext, params: FailParams) -> None:
        """Raises in `running`: the task ends `failed` with the message as its error."""
        raise DemoFailure(params.message)

    @registry.job("demo.serve", params=NoParams, kind=TaskKind.SERVICE)
    async def serve(ctx: JobContext, params: NoParams) -> dict[str, Any]:
        """Reaches `serving` and stays up until stopped or cancelled."""
        started = time.monotonic()
        ctx.log("starting the demo service")
        await ctx.serving(endpoint="demo://serve", info={"kind": "demo", "started": time.time()})
        ctx.log("serving")
        await ctx.until_stopped()
        ctx.log("shutting down")
        return {"served_seconds": round(time.monotonic() - started, 3)}

    @registry.job("demo.ask", params=AskParams)
    async def ask(ctx: JobContext, params: AskParams) -> dict[str, Any]:
        """Asks a question, waits for the answer, completes with it."""
        answer = await ctx.ask(
            params.question,
            choices=params.choices or None,
            key="demo.ask",
            timeout_seconds=params.timeout_seconds,
            default=params.default,
        )
        ctx.log(f"answered: {answer!r}")
        return {"answer": answer}

    @registry.job("demo.fanout", params=FanoutParams)
    async def fanout(ctx: JobContext, params: FanoutParams) -> dict[str, Any]:
        """Spawns `children` demo.sleep tasks and waits for them all; after a crash it
        re-attaches to the children it had spawned (never spawns them twice)."""
        for n in range(1, params.children + 1):
            child = {"seconds": params.seconds, "steps": 5}
            await ctx.spawn("demo.sleep", child, key=f"child {n}", name=f"child {n}")
        await ctx.wait_all()
        return {"children": params.children}

    @registry.job("demo.plan", params=PlanParams)
    async def plan(ctx: JobContext, params: PlanParams) -> dict[str, Any]:
        """Plans three steps that run one after the other, the first behind an approval gate
        (approve or reject it among the questions); rejected, no step runs."""
        step = {"seconds": params.seconds, "steps": 3}
        gather = await ctx.spawn("demo.sleep", step, key="gather", name="1. gather", requires_approval=True)
        build = await ctx.spawn("demo.sleep", step, key="build", name="2. build", depends_on=[gather])
        ship = await ctx.spawn("demo.sleep", step, key="ship", name="3. ship", depends_on=[build])
        try:
            await ctx.wait([gather, build, ship])
        except ChildFailed as exc:
            ctx.log(f"the plan did not run: {exc}", level="warning")
            return {"approved": False, "steps": 0}
        return {"approved": True, "steps": 3}

    @registry.job("demo.count", params=CountParams)
    async def count(ctx: JobContext, params: CountParams) -> dict[str, Any]:
        """Counts, checkpointing after each step; after a crash it resumes from the checkpoint."""
        start = 0
        if isinstance(ctx.restored_checkpoint, dict):
            start = int(ctx.restored_checkpoint.get("n", 0))
        for n in range(start + 1, params.to + 1):
            await ctx.sleep(params.delay)
            await ctx.checkpoint({"n": n})
            ctx.progress(
                100 * n / params.to if params.to else 100,
                f"{n} of {params.to}",
                items_processed=n,
                phase="counting",
            )
        return {"counted_from_restart": start, "final": params.to}
