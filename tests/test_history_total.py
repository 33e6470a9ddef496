"""History's `total`: exact up to `EXACT_TOTAL_LIMIT` matches; above it PostgreSQL's
planner estimate, flagged, and SQLite's exact count. Rows are written straight into a
real database (on both engines) so that 10,000 tasks take a second, not a minute."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from taskstate.core.db import tasks, utcnow
from taskstate.core.reads import EXACT_TOTAL_LIMIT, HistoryFilter
from tests.support.databases import open_store, task_row


async def test_total_is_exact_up_to_the_limit_and_a_flagged_estimate_above(database_url: str) -> None:
    above = EXACT_TOTAL_LIMIT + 500
    start = utcnow() - timedelta(days=1)
    rows = [
        task_row(
            str(uuid.uuid4()),
            state="completed" if i % 2 else "failed",
            created_at=start + timedelta(milliseconds=i),
        )
        for i in range(above)
    ]
    async with open_store(database_url) as store:
        async with store.db.writer.begin() as conn:
            for chunk in range(0, len(rows), 2000):
                await conn.execute(tasks.insert(), rows[chunk : chunk + 2000])
            if not store.db.is_sqlite:
                await conn.execute(sa.text("ANALYZE tasks"))

        failed = await store.reads.list_tasks(HistoryFilter(states=["failed"]), limit=5, cursor=None)
        assert (failed.total, failed.total_is_estimate) == (above // 2, False)
        assert [t["state"] for t in failed.items] == ["failed"] * 5

        everything = await store.reads.list_tasks(HistoryFilter(), limit=5, cursor=None)
        if store.db.is_sqlite:
            assert (everything.total, everything.total_is_estimate) == (above, False)
        else:
            assert everything.total_is_estimate
            # The planner's estimate after ANALYZE: never below what is known to be there.
            assert EXACT_TOTAL_LIMIT < everything.total
            assert abs(everything.total - above) <= above * 0.1, everything.total
        assert everything.next_cursor is not None

        # A filtered page under the limit again is exact, whatever the table's size.
        one_type = await store.reads.list_tasks(HistoryFilter(type="nothing.here"), limit=5, cursor=None)
        assert (one_type.total, one_type.total_is_estimate, one_type.items) == (0, False, [])
