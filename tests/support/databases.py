"""Databases for tests and benchmarks: PostgreSQL through its admin connection, fresh
databases (empty, or copied from a template migrated once), a started store.

A migrated template is made once per test session (`migrated_template`) and every test
that needs a migrated PostgreSQL database gets `CREATE DATABASE … TEMPLATE` of it: a copy
of files instead of six migrations. PostgreSQL refuses to copy a database that anyone is
connected to, so nothing here keeps a connection to the template open.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import sqlalchemy as sa

from taskstate.core.bus import EventBus
from taskstate.core.db import open_database, utcnow
from taskstate.core.migrations import upgrade_to_head
from taskstate.core.store import Store

PG_ADMIN_DSN = os.environ.get("TASKSTATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
#: CI sets this: a PostgreSQL that does not answer fails the PostgreSQL tests instead of skipping them.
REQUIRE_PG = os.environ.get("TASKSTATE_REQUIRE_PG") == "1"

_answers: dict[str, bool] = {}


@contextmanager
def sqlite_write_lock(database: Path | str) -> Iterator[None]:
    """SQLite's one write lock, held until the block ends: every write to `database`
    (from any connection or process) waits meanwhile, as behind a long transaction."""
    lock = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        yield
        lock.execute("ROLLBACK")
    finally:
        lock.close()


async def pg_available(admin_dsn: str = PG_ADMIN_DSN) -> bool:
    """Whether PostgreSQL answers at `admin_dsn` (asked once per process)."""
    if admin_dsn not in _answers:
        try:
            conn = await asyncpg.connect(admin_dsn, timeout=3)
            await conn.close()
            _answers[admin_dsn] = True
        except (OSError, asyncpg.PostgresError, TimeoutError):
            _answers[admin_dsn] = False
    return _answers[admin_dsn]


def pg_dsn(database: str, admin_dsn: str = PG_ADMIN_DSN) -> str:
    """asyncpg's DSN of `database` on the admin connection's server."""
    return f"{admin_dsn.rsplit('/', 1)[0]}/{database}"


def sqlalchemy_pg_url(database: str, admin_dsn: str = PG_ADMIN_DSN) -> str:
    return pg_dsn(database, admin_dsn).replace("postgresql://", "postgresql+asyncpg://", 1)


def database_name(url: str) -> str:
    """The database's name in a PostgreSQL URL or DSN."""
    return url.rsplit("/", 1)[1]


async def create_database(name: str, *, template: str | None = None, admin_dsn: str = PG_ADMIN_DSN) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await admin.close()


async def drop_database(name: str, *, admin_dsn: str = PG_ADMIN_DSN) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def fresh_pg_database(
    *, template: str | None = None, prefix: str = "taskstate_test", admin_dsn: str = PG_ADMIN_DSN
) -> AsyncIterator[str]:
    """A new PostgreSQL database (its SQLAlchemy URL), dropped afterwards: empty, or a copy
    of `template`."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await create_database(name, template=template, admin_dsn=admin_dsn)
    try:
        yield sqlalchemy_pg_url(name, admin_dsn)
    finally:
        await drop_database(name, admin_dsn=admin_dsn)


async def create_migrated_template(admin_dsn: str = PG_ADMIN_DSN) -> str:
    """A database migrated to head, to copy (named for this process; `drop_database` it at the end)."""
    name = f"taskstate_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await create_database(name, admin_dsn=admin_dsn)
    try:
        db = open_database(sqlalchemy_pg_url(name, admin_dsn))
        try:
            await upgrade_to_head(db.writer)
        finally:
            await db.dispose()  # no connection may stay open to a template
    except BaseException:
        await drop_database(name, admin_dsn=admin_dsn)
        raise
    return name


async def terminate_connections(
    database: str,
    *,
    application_name_like: str = "%",
    limit: int | None = None,
    admin_dsn: str = PG_ADMIN_DSN,
) -> int:
    """Terminates the server processes of `database`'s connections (all of them, or those whose
    application name is LIKE the pattern, at most `limit`), as a crash or a failover would;
    answers how many."""
    query = (
        "SELECT count(pg_terminate_backend(pid)) FROM ("
        " SELECT pid FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid() AND coalesce(application_name, '') LIKE $2"
        + (f" LIMIT {int(limit)}" if limit is not None else "")
        + ") AS victims"
    )
    admin = await asyncpg.connect(admin_dsn)
    try:
        killed: int = await admin.fetchval(query, database, application_name_like)
        return killed
    finally:
        await admin.close()


async def count_connections(
    database: str, *, application_name_like: str = "%", admin_dsn: str = PG_ADMIN_DSN
) -> int:
    """How many connections `database` has whose application name is LIKE the pattern."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE $2",
            database,
            application_name_like,
        )
        return count
    finally:
        await admin.close()


def task_row(task_id: str, **fields: object) -> dict[str, object]:
    """A `tasks` row for writing straight into a database: a queued `demo.noop` with only
    the columns that have no default, and `fields` over it."""
    now = utcnow()
    return {
        "id": task_id,
        "type": "demo.noop",
        "name": task_id,
        "state": "queued",
        "params": {},
        "trigger": "api",
        "run_at": now,
        "created_at": now,
        "updated_at": now,
        **fields,
    }


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


async def audit_transactions(store: Store) -> tuple[dict[str, list[str]], dict[tuple[str, str], int]]:
    """On PostgreSQL, each task's audit path in `seq` order, and the transaction that wrote
    each of its rows (`xmin`): rows with one `xmin` were committed together."""
    async with store.db.reader.connect() as conn:
        found = await conn.execute(
            sa.text("SELECT task_id, to_state, xmin::text::bigint FROM transitions ORDER BY seq")
        )
        rows = found.all()
    paths: dict[str, list[str]] = defaultdict(list)
    tx: dict[tuple[str, str], int] = {}
    for task_id, to_state, xmin in rows:
        paths[task_id].append(to_state)
        tx[task_id, to_state] = xmin
    return paths, tx
