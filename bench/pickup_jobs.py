"""The job the pickup scenario runs in taskstate: it writes when its code started.

Loaded by `taskstate serve` through `TASKSTATE_JOBS=bench.pickup_jobs`; its first act is
`bench.stamp.stamp`, as for the peers' jobs.
"""

from __future__ import annotations

from pydantic import BaseModel

from bench.stamp import stamp
from taskstate.jobs import JobContext, JobRegistry

TYPE = "bench.stamp"


class StampParams(BaseModel):
    key: str


def register(registry: JobRegistry) -> None:
    @registry.job(TYPE, params=StampParams)
    async def run(ctx: JobContext, params: StampParams) -> None:
        """Writes when the job's code started (the pickup benchmark)."""
        stamp(params.key)
