"""Fixtures: real databases (SQLite in a temp dir, a fresh PostgreSQL database per test),
and real servers (uvicorn on a loopback port, in this process or as a subprocess)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from taskstate.app import create_app
from taskstate.config import Settings
from taskstate.core.bus import EventBus
from taskstate.core.db import open_database
from taskstate.core.migrations import upgrade_to_head
from taskstate.core.store import Store
from taskstate.runtime.demo_jobs import register as register_demo_jobs
from taskstate.runtime.registry import JobRegistry
from taskstate.web.header_timeout import header_timeout_protocol
from tests import jobs as test_jobs

PG_ADMIN_DSN = os.environ.get("TASKSTATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("TASKSTATE_REQUIRE_PG") == "1"

_pg_available: bool | None = None


async def _check_pg() -> bool:
    global _pg_available
    if _pg_available is None:
        try:
            conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
            await conn.close()
            _pg_available = True
        except (OSError, asyncpg.PostgresError, TimeoutError):
            _pg_available = False
    return _pg_available


def _asyncpg_dsn(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{database}"


def _sqlalchemy_url(database: str) -> str:
    return _asyncpg_dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)


@asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"taskstate_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _sqlalchemy_url(name)
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh database, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'taskstate.db'}"
        return
    if not await _check_pg():
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (TASKSTATE_REQUIRE_PG=1) but {PG_ADMIN_DSN} does not answer")
        pytest.skip(f"PostgreSQL does not answer at {PG_ADMIN_DSN}")
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh PostgreSQL database (for PostgreSQL-only tests)."""
    if not await _check_pg():
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required but {PG_ADMIN_DSN} does not answer")
        pytest.skip(f"PostgreSQL does not answer at {PG_ADMIN_DSN}")
    async with fresh_pg_database() as url:
        yield url


def make_settings(database_url: str, **overrides: Any) -> Settings:
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
    registry = JobRegistry()
    register_demo_jobs(registry)
    test_jobs.register(registry)
    return registry


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """A started store on a migrated database, for tests that need no server."""
    db = open_database(url)
    await upgrade_to_head(db.writer)
    store = Store(db, EventBus())
    store.start()
    try:
        yield store
    finally:
        await store.close()
        await db.dispose()


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
        response = await self.client.post("/api/v2/tasks", json={"type": type, **body})
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    async def get(self, task_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v2/tasks/{task_id}")
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        return task

    async def wait_for(self, task_id: str, *states: str, timeout: float = 15) -> dict[str, Any]:
        """Poll until the task is in one of `states` (default: any terminal state)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            task = await self.get(task_id)
            if (task["state"] in states) if states else task["is_terminal"]:
                return task
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"task {task_id} still {task['state']} after {timeout}s")
            await asyncio.sleep(0.02)

    async def transitions(self, task_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/v2/tasks/{task_id}/transitions")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@asynccontextmanager
async def live_server(
    settings: Settings,
    registry: JobRegistry | None = None,
    http: Literal["auto", "httptools", "h11"] = "auto",
) -> AsyncIterator[LiveServer]:
    """The real app on a real uvicorn (with `taskstate serve`'s header timeout), on a free
    loopback port, in this event loop."""
    app = create_app(settings, registry or make_registry())
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        http=header_timeout_protocol(settings.header_timeout_seconds, http),
        ws_max_size=64 * 1024,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if serving.done():
                    serving.result()
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            yield LiveServer(app, base_url, client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(database_url)) as live:
        yield live
        # Nothing may be left running once the test's tasks are done.


@pytest.fixture(autouse=True)
def _reset_test_jobs() -> Iterator[None]:
    test_jobs.GATES.clear()
    test_jobs.RUNS.clear()
    yield
