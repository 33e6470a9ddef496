"""Bounded waits. Where the service offers an event (the bus, a job's asyncio task), the
in-process waits (`LiveServer.wait_for`, `wait_released`) await it; these poll what has
no event: a condition in a test's hands, a task seen through HTTP from another process."""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tests.support.api import Target, client_of, get_task

if TYPE_CHECKING:
    from taskstate.runtime.supervisor import Supervisor
    from tests.support.servers import LiveServer

Predicate = Callable[[], bool] | Callable[[], Awaitable[bool]]


async def wait_until(predicate: Predicate, what: str, within: float = 5.0, poll: float = 0.01) -> None:
    """Until `predicate()` (plain or async) is true; fails naming `what` after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        answer = predicate()
        if await answer if inspect.isawaitable(answer) else answer:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(poll)


def reached(
    task: dict[str, Any], states: tuple[str, ...], until: Callable[[dict[str, Any]], bool] | None
) -> bool:
    """Whether `task` is in one of `states`, or `until(task)` holds (neither given: it has ended)."""
    if until is not None:
        return until(task)
    return task["state"] in states if states else bool(task["is_terminal"])


async def wait_for_task(
    target: Target,
    task_id: str,
    *states: str,
    until: Callable[[dict[str, Any]], bool] | None = None,
    within: float = 15,
    poll: float = 0.05,
) -> dict[str, Any]:
    """The task, read through the API (of a server in another process, say), once it is in
    one of `states`, or `until(task)` holds (by default: once it is terminal)."""

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with client_of(target) as client:
        while True:
            task = await get_task(client, task_id)
            if reached(task, states, until):
                return task
            if loop.time() > deadline:
                raise AssertionError(f"task {task_id} still {task['state']} after {within}s: {task}")
            await asyncio.sleep(poll)


async def wait_released(supervisor: Supervisor, task_ids: Iterable[str], within: float = 5.0) -> None:
    """Until the supervisor holds no job of these tasks: awaits each job's asyncio task, then
    the done-callback that takes it out of `running`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    wanted = set(task_ids)
    while held := [job for task_id, job in supervisor.running.items() if task_id in wanted]:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(
                f"the supervisor still holds {sorted(j.task_id for j in held)} after {within}s"
            )
        jobs = {job.task for job in held if job.task is not None}
        if jobs:
            await asyncio.wait(jobs, timeout=remaining)
        await asyncio.sleep(0)  # the done-callbacks run on the next turn


async def wait_idle(servers: Sequence[LiveServer], within: float = 30) -> None:
    """Until no task is active (asked of the first server) and no server's supervisor holds a job."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        response = await servers[0].client.get("/api/v2/tasks/active")
        assert response.status_code == 200, response.text
        active = response.json()["items"]
        running = [task_id for server in servers for task_id in server.services.supervisor.running]
        if not active and not running:
            return
        if loop.time() > deadline:
            states = Counter(t["state"] for t in active)
            raise AssertionError(f"after {within}s: {dict(states)} active, {len(running)} jobs running")
        await asyncio.sleep(0.05)
