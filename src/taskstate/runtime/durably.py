"""A job's own writes, carried through short database failures.

A job must not fail because the database blinked (a lost connection, a failover):
its transitions, checkpoints and questions are retried for a while. A refusal
(`TaskstateError`: the task is not the job's any more, say) is an answer, not a
failure, and is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from taskstate.core.errors import TaskstateError

log = logging.getLogger(__name__)

#: How long a job's own writes are retried through database failures before it gives up.
WRITE_RETRY_SECONDS = 30.0

T = TypeVar("T")


class Refusal(Exception):
    """Raised by a write to stop the retries at once (the job's own "not ours any more")."""


async def durably(task_id: str, what: str, call: Callable[[], Awaitable[T]]) -> T:
    """`call`, retried through transient database failures for up to WRITE_RETRY_SECONDS."""
    delay = 0.1
    deadline = time.monotonic() + WRITE_RETRY_SECONDS
    while True:
        try:
            return await call()
        except (TaskstateError, Refusal):
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            log.warning("task %s: %s failed; retrying", task_id, what, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
