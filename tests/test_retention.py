"""Retention on a table of 100,000 tasks: deletes exactly what it should, in batches that
never hold up other writes for long."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskstate.core import sqlite_space
from taskstate.core.creation import NewTask
from taskstate.core.db import (
    open_database,
    seq_counter,
    task_dependencies,
    task_logs,
    tasks,
    transitions,
    utcnow,
)
from taskstate.core.maintenance import delete_finished_before, retention_cutoff
from taskstate.core.migrations import upgrade_to_head
from taskstate.core.states import State
from taskstate.core.store import Store
from tests.support.databases import open_store

pytestmark = pytest.mark.timeout(300)

OLD, RECENT, ACTIVE = 10_000, 60_000, 30_000


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url) as store:
        yield store


def _row(task_id: str, state: str, finished_days_ago: float | None) -> dict[str, object]:
    now = utcnow()
    finished = now - timedelta(days=finished_days_ago) if finished_days_ago is not None else None
    created = (finished or now) - timedelta(minutes=1)
    return {
        "id": task_id,
        "type": "demo.noop",
        "name": "bulk",
        "state": state,
        "progress": 0.0,
        "items_processed": 0,
        "items_failed": 0,
        "params": {},
        "priority": 0,
        "attempt": 1,
        "max_attempts": 3,
        "trigger": "api",
        "run_at": created,
        "created_at": created,
        "updated_at": finished or now,
        "started_at": created,
        "finished_at": finished,
        "restoration_count": 0,
        "restore_pending": False,
    }


#: A dependency edge: (task, the task it depends on).
Edge = tuple[str, str]


async def bulk_load(store: Store) -> tuple[set[str], set[str], set[Edge]]:
    """The tasks, and dependency edges among old tasks, from recent ones to old ones and among
    recent ones; answers the old tasks, the kept ones, and the edges that must stay."""
    old = {str(uuid.uuid4()) for _ in range(OLD)}
    kept = {str(uuid.uuid4()) for _ in range(RECENT + ACTIVE)}
    task_rows = [_row(t, "completed", 40) for t in old]
    recent_ids = sorted(kept)
    task_rows += [_row(t, "failed", 1) for t in recent_ids[:RECENT]]
    task_rows += [_row(t, "queued", None) for t in recent_ids[RECENT:]]
    at = utcnow()
    transition_rows = [
        {
            "seq": seq,
            "task_id": row["id"],
            "from_state": None,
            "to_state": "queued",
            "at": at,
            "actor": "bulk",
        }
        for seq, row in enumerate(task_rows, start=1)
    ]
    async with store.db.writer.begin() as conn:
        for i in range(0, len(task_rows), 5000):
            await conn.execute(tasks.insert(), task_rows[i : i + 5000])
            await conn.execute(transitions.insert(), transition_rows[i : i + 5000])
        await conn.execute(sa.update(seq_counter).values(value=len(transition_rows)))
        old_ids = sorted(old)
        staying = set(itertools.pairwise(recent_ids[:1001]))
        edges = [
            *itertools.pairwise(old_ids[:2001]),
            *zip(recent_ids[:1000], old_ids, strict=False),
            *staying,
        ]
        await conn.execute(task_dependencies.insert(), [{"task_id": a, "depends_on": b} for a, b in edges])
    return old, kept, staying


async def test_retention_deletes_exactly_the_old_terminal_tasks_without_blocking_writes(
    database_url: str,
) -> None:
    # Loaded before the store under test opens: its feed starts after the loaded rows, as
    # an instance's does on a database with a history. (Loaded under its eyes, the 100,000
    # rows were news to publish, and reading them took the event loop from the writes.)
    async with open_store(database_url) as loader:
        old, kept, staying_edges = await bulk_load(loader)
    async with open_store(database_url) as store:
        await _retention_beside_writes(store, old, kept, staying_edges)


async def _retention_beside_writes(
    store: Store, old: set[str], kept: set[str], staying_edges: set[Edge]
) -> None:
    latencies: list[float] = []
    created: list[str] = []
    done = asyncio.Event()

    async def keep_writing() -> None:
        while not done.is_set():
            # Each write on its own: how long one write waits behind the clean-up.
            started = time.perf_counter()
            [result] = await store.create_tasks(
                [NewTask(type="demo.noop", params={}, name="live")], actor="t"
            )
            latencies.append(time.perf_counter() - started)
            started = time.perf_counter()
            await store.transition(result.task["id"], State.CANCELLED, reason="t", actor="t")
            latencies.append(time.perf_counter() - started)
            created.append(result.task["id"])
            await asyncio.sleep(0.005)

    writer = asyncio.create_task(keep_writing())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    deleted = await delete_finished_before(store, retention_cutoff(30))
    elapsed = time.perf_counter() - started
    done.set()
    await writer

    assert deleted == OLD
    async with store.db.reader.connect() as conn:
        remaining = set((await conn.execute(sa.select(tasks.c.id))).scalars())
        orphan_rows = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(transitions)
                .where(transitions.c.task_id.not_in(sa.select(tasks.c.id)))
            )
        ).scalar_one()
        edges = {(r.task_id, r.depends_on) for r in await conn.execute(sa.select(task_dependencies))}
    assert remaining == kept | set(created)
    assert remaining.isdisjoint(old)
    assert orphan_rows == 0
    # A deleted task's edges go with it, both ways; the others stay.
    assert edges == staying_edges
    worst = max(latencies)
    print(
        f"\nretention: deleted {deleted} of {OLD + RECENT + ACTIVE} tasks in {elapsed:.2f}s; "
        f"{len(latencies)} concurrent writes, worst {worst * 1000:.0f} ms"
    )
    assert len(latencies) >= 5, "the concurrent writer never got a turn"
    # Measured here, alone: SQLite and PostgreSQL about 55 ms worst; a second would mean the
    # batches are too big.
    assert worst < 1.0, f"a write waited {worst * 1000:.0f} ms behind the clean-up"


async def test_sqlite_gives_the_space_of_deleted_tasks_back(tmp_path: Path) -> None:
    """After a clean-up, the SQLite file shrinks: freed pages go back to the file system
    (incremental auto-vacuum), instead of a file as large as it ever was."""
    path = tmp_path / "taskstate.db"
    async with open_store(f"sqlite+aiosqlite:///{path}") as store:
        ids = [str(uuid.uuid4()) for _ in range(100)]
        line = "x" * 400
        async with store.db.writer.begin() as conn:
            await conn.execute(tasks.insert(), [_row(t, "completed", 40) for t in ids])
            for task_id in ids:
                rows = [
                    {"task_id": task_id, "seq": n, "at": utcnow(), "level": "info", "message": line}
                    for n in range(1, 501)
                ]
                await conn.execute(task_logs.insert(), rows)
        full = _file_size(path)
        assert full > 20_000_000, f"the test wrote too little to measure: {full} bytes"
        assert await delete_finished_before(store, retention_cutoff(30)) == len(ids)
        emptied = _file_size(path)
        async with store.db.reader.connect() as conn:
            free = (await conn.exec_driver_sql("PRAGMA freelist_count")).scalar_one()
    assert free == 0
    assert emptied < full / 10, f"{full} bytes before the clean-up, {emptied} after"


async def test_an_older_sqlite_database_is_converted_to_incremental_vacuum_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # made as before: no auto-vacuum
        old.execute("CREATE TABLE leftover (x TEXT)")
        assert old.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade_to_head(db.writer)
        assert not await sqlite_space.ensure_incremental(db.writer), "converted twice"
    finally:
        await db.dispose()
    with sqlite3.connect(path) as converted:
        assert converted.execute("PRAGMA auto_vacuum").fetchone() == (sqlite_space.INCREMENTAL,)


def _file_size(path: Path) -> int:
    """The database file's size once its write-ahead log is folded in."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size
