"""Reading what the service wrote, straight from its database (or a job's journal), beside
the service rather than through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from taskstate.core.bus import EventBus
from taskstate.core.db import Database, open_database, transitions
from taskstate.core.store import Store


async def read_all(db: Database) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """All transition rows (in `seq` order) and all tasks, on one connection."""
    rows_query = sa.text("SELECT seq, task_id, from_state, to_state, actor FROM transitions ORDER BY seq")
    tasks_query = sa.text("SELECT id, state, worker_id, attempt FROM tasks")
    async with db.reader.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(rows_query)).mappings().all()]
        tasks = {r["id"]: dict(r) for r in (await conn.execute(tasks_query)).mappings().all()}
    return rows, tasks


async def read_database(url: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], int]:
    """Every transition row and task of the database at `url`, and the store's newest seq."""
    db = open_database(url)
    try:
        rows, tasks = await read_all(db)
        store = Store(db, EventBus())
        latest = await store.reads.latest_seq()
        return rows, tasks, latest
    finally:
        await db.dispose()


async def table_seqs(db: Database) -> list[int]:
    """Every `seq` in the transitions table, in order."""
    async with db.reader.connect() as conn:
        result = await conn.execute(sa.select(transitions.c.seq).order_by(transitions.c.seq))
        return [int(s) for s in result.scalars()]


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The entries a test job wrote to its journal (one JSON object a line), outside the service."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
