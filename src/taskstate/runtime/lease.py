"""The instance's lease on the tasks it holds: how long it may trust that they are its own.

Peers orphan the tasks of an instance whose heartbeat is older than
`TASKSTATE_ORPHAN_AFTER_SECONDS`. An instance cannot see that happen while it
is stalled (a long pause, a stopped VM, CPU starvation): when it resumes, its
jobs' timers fire at once, and a job would go on with its next side effect
beside the attempt that replaced it. So the instance fences itself: its lease
runs from the start of its last successful heartbeat for a little less than
the orphan timeout, and a job that finds it lapsed (at the end of any awaited
call of the job API: `ctx.sleep`, `ctx.checkpoint`, `ctx.ask`, `ctx.spawn`,
`ctx.wait`, ...) waits for a heartbeat to renew it and then for the task's row to
confirm that the task is still this attempt's, before it takes another step: an
await that spanned the stall (a checkpoint written just before it) is no exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: Between failed renewals (the database is unreachable): the jobs wait meanwhile.
RETRY_SECONDS = 0.5


class Lease:
    def __init__(self, valid_for: float, renew: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.valid_for = valid_for
        self._renew = renew
        self._from = time.monotonic()
        self._renewing: asyncio.Task[None] | None = None
        #: How many times the lease lapsed (was renewed only after it had expired). A job
        #: that last confirmed its task before a lapse must confirm it again, even if the
        #: lease is fresh by the time it looks (another job or the heartbeat renewed it).
        self.lapses = 0

    @classmethod
    def for_timeouts(
        cls, *, orphan_after: float, heartbeat: float, renew: Callable[[], Coroutine[Any, Any, None]]
    ) -> Lease:
        """Valid for the orphan timeout less one heartbeat period (at least half of it): an
        instance that beats on time never sees it expire; one that stalled finds it expired
        before its peers can have judged it lost."""
        return cls(max(orphan_after - heartbeat, orphan_after / 2), renew)

    def renewed(self, started_at: float) -> None:
        """A heartbeat that started at `started_at` (monotonic) was written."""
        if started_at - self._from >= self.valid_for:
            self.lapses += 1
        self._from = max(self._from, started_at)

    @property
    def age(self) -> float:
        """Seconds since the start of the last successful heartbeat."""
        return time.monotonic() - self._from

    @property
    def fresh(self) -> bool:
        return self.age < self.valid_for

    async def confirm(self) -> None:
        """Return once the lease is fresh, renewing it if it is not (one renewal for all the
        jobs that ask at once; retried while the database cannot be reached)."""
        while not self.fresh:
            if self._renewing is None or self._renewing.done():
                self._renewing = asyncio.create_task(self._renew(), name="taskstate-lease")
            try:
                await asyncio.shield(self._renewing)
            except Exception:
                log.warning("renewing the lease failed; retrying", exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
