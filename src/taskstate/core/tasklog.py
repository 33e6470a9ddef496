"""Task logs: reading what a job wrote, line by line.

Lines are numbered per task (`seq`), kept in memory by the supervisor,
published live, and written in batches (output.py). Past the cap the oldest
lines are dropped and a marker line says how many.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from taskstate.core.db import iso, task_logs, tasks
from taskstate.core.errors import NotFound
from taskstate.core.store import Store


async def read(store: Store, task_id: str, *, after: int, limit: int) -> list[dict[str, Any]]:
    async with store.db.reader.connect() as conn:
        exists = (await conn.execute(sa.select(tasks.c.id).where(tasks.c.id == task_id))).first()
        if exists is None:
            raise NotFound(f"no task with id {task_id!r}")
        rows = (
            (
                await conn.execute(
                    sa.select(task_logs)
                    .where(task_logs.c.task_id == task_id, task_logs.c.seq > after)
                    .order_by(task_logs.c.seq)
                    .limit(limit)
                )
            )
            .mappings()
            .all()
        )
    return [{"seq": r["seq"], "at": iso(r["at"]), "level": r["level"], "message": r["message"]} for r in rows]
