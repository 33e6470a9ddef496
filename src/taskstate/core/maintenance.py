"""Keeping the database in shape: retention of finished tasks, and fresh statistics.

Retention deletes in small batches, each its own transaction, so that it never holds up
other writes for long; on SQLite it then gives the freed pages back (sqlite_space.py).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from taskstate.core import sqlite_space
from taskstate.core.db import TERMINAL_VALUES, Database, questions, task_logs, tasks, transitions, utcnow
from taskstate.core.store import Store
from taskstate.core.writer import WriteBatch


def retention_cutoff(days: float) -> datetime:
    return utcnow() - timedelta(days=days)


async def delete_finished_before(store: Store, cutoff: datetime, *, batch_size: int = 100) -> int:
    """Delete terminal tasks finished before `cutoff`, with their rows, a batch per transaction;
    on SQLite, then give the freed pages back to the file system."""
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
_TASKS_STATISTICS = sa.text(
    "SELECT n_live_tup AS live, n_mod_since_analyze AS changed FROM pg_stat_user_tables "
    "WHERE relid = 'tasks'::regclass"
)


class TableStatistics:
    """ANALYZE of the tasks table on PostgreSQL when the planner's view of it is stale."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._analysed_at = -ANALYZE_AT_MOST_EVERY

    async def refresh(self) -> bool:
        """ANALYZE `tasks` on PostgreSQL when it changed by more than its own size since
        the last ANALYZE (autovacuum's or ours), and by at least 1,000 rows.

        A young or fast-churning tasks table is exactly what autovacuum (10% of the table,
        checked once a minute) leaves unanalysed longest, and without statistics the
        planner scanned the whole table for a claim or a grouped transition: 18% fewer
        tasks/s on a new table of 3,000. Returns whether it analysed.
        """
        now = time.monotonic()
        if self.db.is_sqlite or now - self._analysed_at < ANALYZE_AT_MOST_EVERY:
            return False
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(_TASKS_STATISTICS)).first()
            if row is None or row.changed < max(ANALYZE_AFTER_CHANGES, row.live):
                return False
            await conn.execute(sa.text("ANALYZE tasks"))
        self._analysed_at = now
        return True
