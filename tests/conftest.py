"""Fixtures: real databases (SQLite in a temp dir, a fresh PostgreSQL database per test,
copied from a template migrated once per session), and real servers (uvicorn on a loopback
port, in this process). The helpers behind them live in `tests/support/`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio

from tests import jobs as test_jobs
from tests.support.databases import (
    PG_ADMIN_DSN,
    REQUIRE_PG,
    create_migrated_template,
    drop_database,
    fresh_pg_database,
    pg_available,
)
from tests.support.servers import LiveServer, live_server, make_settings

_template: str | None = None


async def require_pg() -> None:
    """Skips the test when PostgreSQL does not answer, or fails it where it is required."""
    if not await pg_available():
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (TASKSTATE_REQUIRE_PG=1) but {PG_ADMIN_DSN} does not answer")
        pytest.skip(f"PostgreSQL does not answer at {PG_ADMIN_DSN}")


async def pg_template() -> str:
    """This session's migrated template database: made on first use, dropped when the session ends."""
    global _template
    await require_pg()
    if _template is None:
        _template = await create_migrated_template()
    return _template


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _template is not None:
        asyncio.run(drop_database(_template))


@asynccontextmanager
async def _database(backend: str, tmp_path: Path, *, migrated: bool) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'taskstate.db'}"
        return
    template = await pg_template() if migrated else None
    if not migrated:
        await require_pg()
    async with fresh_pg_database(template=template) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh database on each backend: on PostgreSQL a copy of the migrated
    template, on SQLite a new file (migrated by whoever opens it first, in milliseconds)."""
    async with _database(request.param, tmp_path, migrated=True) as url:
        yield url


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh PostgreSQL database, a copy of the migrated template (for PostgreSQL-only tests)."""
    async with _database("postgres", tmp_path, migrated=True) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, empty database that no migration has touched, on each backend
    (for the tests of the migrations themselves)."""
    async with _database(request.param, tmp_path, migrated=False) as url:
        yield url


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[LiveServer]:
    """A live server of its own for each test, on each backend."""
    async with live_server(make_settings(database_url)) as live:
        yield live
        # Nothing may be left running once the test's tasks are done.
        await live.assert_nothing_left_running()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    """One live server per backend for a whole module, for tests that touch only the tasks
    they create (no totals, no global clean-up or reset): a fresh server per test costs more
    than most of these tests. Its tests run in the module's event loop
    (`pytest.mark.asyncio(loop_scope="module")`)."""
    async with (
        _database(request.param, tmp_path_factory.mktemp("shared"), migrated=True) as url,
        live_server(make_settings(url)) as live,
    ):
        yield live


@pytest.fixture(autouse=True)
def _reset_test_jobs() -> Iterator[None]:
    test_jobs.GATES.clear()
    test_jobs.RUNS.clear()
    yield
