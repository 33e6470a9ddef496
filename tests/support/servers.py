"""The real app on a real uvicorn (with `taskstate serve`'s header timeout), on a free
loopback port, in the test's own event loop: its services are at hand for the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from taskstate.app import create_app
from taskstate.config import Settings
from taskstate.core.states import is_terminal
from taskstate.runtime.demo_jobs import register as register_demo_jobs
from taskstate.runtime.registry import JobRegistry
from taskstate.web.events import WS_PROTOCOL
from taskstate.web.header_timeout import header_timeout_protocol
from tests import jobs as test_jobs
from tests.support.api import create_task, get_task, get_transitions
from tests.support.waits import reached, wait_released


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """The tests' settings: short heartbeats, polls and grace periods."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "max_concurrent_tasks": 10,
        "poll_seconds": 0.2,
        "heartbeat_seconds": 0.5,
        "orphan_after_seconds": 3,
        "cancel_grace_seconds": 0.5,
        "shutdown_grace_seconds": 1,
        "progress_flush_seconds": 0.1,
        "demo_jobs": True,
    }
    values.update(overrides)
    return Settings(**values)


def make_registry() -> JobRegistry:
    """The demo jobs and the tests' own (`tests/jobs.py`)."""
    registry = JobRegistry()
    register_demo_jobs(registry)
    test_jobs.register(registry)
    return registry


#: When no event arrives (another instance's commit not heard of yet), look again after this.
_LOOK_AGAIN_SECONDS = 0.25


@dataclass
class LiveServer:
    app: FastAPI
    base_url: str
    client: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/api/v2/events"

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def create(self, type: str, **body: Any) -> dict[str, Any]:
        return await create_task(self.client, type, **body)

    async def get(self, task_id: str) -> dict[str, Any]:
        return await get_task(self.client, task_id)

    async def wait_for(
        self,
        task_id: str,
        *states: str,
        until: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 15,
    ) -> dict[str, Any]:
        """The task once it is in one of `states`, or `until(task)` holds (by default: once
        it is terminal).

        Woken by the task's events on the server's bus (its transitions; any of its events
        for `until`), and looked at again now and then all the same, for what reaches this
        bus late (another instance's commits).
        """

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self.services.store.bus.subscribe(task_id=task_id, maxsize=100_000) as events:
            while True:
                task = await self.get(task_id)
                if reached(task, states, until):
                    return task
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(f"task {task_id} still {task['state']} after {timeout}s")
                try:
                    async with asyncio.timeout(min(remaining, _LOOK_AGAIN_SECONDS)):
                        while (await events.get()).type != "transition" and until is None:
                            pass
                except TimeoutError:
                    pass

    async def transitions(self, task_id: str) -> list[dict[str, Any]]:
        return await get_transitions(self.client, task_id)

    async def assert_nothing_left_running(self, within: float = 5.0) -> None:
        """Every job whose task has ended leaves the supervisor's `running` within `within`
        seconds (so once all tasks have ended, nothing runs). Jobs of tasks still going are
        left alone: the test may have left them waiting on purpose."""
        supervisor = self.services.supervisor
        ended = []
        for task_id in list(supervisor.running):
            row = await self.services.store.reads.get_task_row(task_id)
            if row is None or is_terminal(row["state"]):
                ended.append(task_id)
        await wait_released(supervisor, ended, within)


@asynccontextmanager
async def live_server(
    settings: Settings,
    registry: JobRegistry | None = None,
    http: Literal["auto", "httptools", "h11"] = "auto",
) -> AsyncIterator[LiveServer]:
    """The real app on a real uvicorn (with `taskstate serve`'s header timeout), on a free
    loopback port, in this event loop."""
    app = create_app(settings, registry or make_registry())
    async with serving(app, settings.header_timeout_seconds, http) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            yield LiveServer(app, base_url, client)


@asynccontextmanager
async def serving(
    app: ASGIApp,
    header_timeout_seconds: float = 10,
    http: Literal["auto", "httptools", "h11"] = "auto",
) -> AsyncIterator[str]:
    """Any ASGI application (with its lifespan) on a real uvicorn, on a free loopback port, in
    this event loop, until the block ends: its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        http=header_timeout_protocol(header_timeout_seconds, http),
        ws=WS_PROTOCOL,
        ws_max_size=64 * 1024,
    )
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if running.done():
                    running.result()
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(running, timeout=30)
