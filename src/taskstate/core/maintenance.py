"""Keeping the database in shape: retention of finished tasks, and fresh statistics.

Retention deletes in small batches, each its own transaction, so that it never holds up
other writes for long; on SQLite it then gives the freed pages back (sqlite_space.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taskstate.core import sqlite_space
from taskstate.core.db import (
    TERMINAL_VALUES,
    Database,
    questions,
    task_dependencies,
    task_logs,
    tasks,
    transitions,
    utcnow,
)
from taskstate.core.store import Store
from taskstate.core.writer import WriteBatch


def retention_cutoff(days: float) -> datetime:
    return utcnow() - timedelta(days=days)


async def delete_finished_before(store: Store, cutoff: datetime, *, batch_size: int = 100) -> int:
    """Delete terminal tasks finished before `cutoff`, with their rows, a batch per transaction;
    on SQLite, then give the freed pages back to the file system."""
    if not store.db.is_sqlite:
        async with store.db.reader.connect() as conn:
            await analyse_stale(conn, RETENTION_TABLES)
    deleted = 0
    while True:

        async def op(wb: WriteBatch) -> int:
            ids = (
                (
                    await wb.conn.execute(
                        sa.select(tasks.c.id)
                        .where(tasks.c.state.in_(TERMINAL_VALUES), tasks.c.finished_at < cutoff)
                        .limit(batch_size)
                    )
                )
                .scalars()
                .all()
            )
            if ids:
                for table in (transitions, questions, task_logs):
                    await wb.conn.execute(sa.delete(table).where(table.c.task_id.in_(ids)))
                # Its edges both ways: a dependent still waiting keeps its `blockers` count.
                await wb.conn.execute(
                    sa.delete(task_dependencies).where(
                        task_dependencies.c.task_id.in_(ids) | task_dependencies.c.depends_on.in_(ids)
                    )
                )
                await wb.conn.execute(sa.delete(tasks).where(tasks.c.id.in_(ids)))
            return len(ids)

        count = await store.write(op)
        deleted += count
        if count < batch_size:
            break
    if deleted and store.db.is_sqlite:
        await sqlite_space.give_back_free_pages(store.db.writer)
    return deleted


ANALYZE_AFTER_CHANGES = 1_000
ANALYZE_AT_MOST_EVERY = 60.0  # seconds, per instance
#: What a retention batch reads: stale statistics turned its deletes into sequential scans.
RETENTION_TABLES = ("tasks", "transitions", "questions", "task_logs", "task_dependencies")
_STATISTICS = sa.text(
    "SELECT relname AS name, n_live_tup AS live, n_mod_since_analyze AS changed "
    "FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname IN :names"
).bindparams(sa.bindparam("names", expanding=True))


async def analyse_stale(conn: AsyncConnection, names: Sequence[str]) -> list[str]:
    """ANALYZE those of the tables (PostgreSQL) that changed by more than their own size since
    their last ANALYZE (autovacuum's or ours), and by at least 1,000 rows; answers which.

    A young or fast-churning table is exactly what autovacuum (10% of the table, checked
    once a minute) leaves unanalysed longest, and the planner without statistics takes
    sequential scans where an index reaches a few rows.
    """
    rows = (await conn.execute(_STATISTICS, {"names": list(names)})).all()
    stale = sorted(r.name for r in rows if r.changed >= max(ANALYZE_AFTER_CHANGES, r.live))
    if stale:
        await conn.execute(sa.text(f"ANALYZE {', '.join(stale)}"))
    return stale


class TableStatistics:
    """ANALYZE of the tasks table on PostgreSQL when the planner's view of it is stale."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._analysed_at = -ANALYZE_AT_MOST_EVERY

    async def refresh(self) -> bool:
        """ANALYZE `tasks` on PostgreSQL when its statistics are stale (`analyse_stale`), at
        most once a minute: without them the planner scanned the whole table for a claim or
        a grouped transition, 18% fewer tasks/s on a new table of 3,000. Returns whether it
        analysed.
        """
        now = time.monotonic()
        if self.db.is_sqlite or now - self._analysed_at < ANALYZE_AT_MOST_EVERY:
            return False
        async with self.db.reader.connect() as conn:
            if not await analyse_stale(conn, ["tasks"]):
                return False
        self._analysed_at = now
        return True
