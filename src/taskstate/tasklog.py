"""Task logs: what a job wrote, line by line, bounded per task.

Lines are numbered per task (`seq`), kept in memory by the supervisor,
published live, and written in batches. Past the cap the oldest lines are
dropped and a marker line says how many.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskstate.db import iso, task_logs, tasks
from taskstate.errors import NotFound
from taskstate.store import Store
from taskstate.writer import WriteBatch

LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class LogLine:
    task_id: str
    seq: int
    at: datetime
    level: str
    message: str


async def append(store: Store, lines: list[LogLine], *, cap: int) -> None:
    """Write lines (of any tasks) in one transaction, then trim each task to its last `cap` lines."""
    if not lines:
        return

    async def op(wb: WriteBatch) -> None:
        conn = wb.conn
        await conn.execute(
            task_logs.insert(),
            [
                {"task_id": x.task_id, "seq": x.seq, "at": x.at, "level": x.level, "message": x.message}
                for x in lines
            ],
        )
        last: dict[str, LogLine] = {}
        for line in lines:
            last[line.task_id] = line
        for task_id, line in last.items():
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id, tasks.c.log_seq < line.seq)
                .values(log_seq=line.seq)
            )
            cutoff = line.seq - cap
            if cutoff <= 0:
                continue
            dropped = (
                await conn.execute(
                    sa.delete(task_logs)
                    .where(task_logs.c.task_id == task_id, task_logs.c.seq <= cutoff)
                    .returning(task_logs.c.seq)
                )
            ).all()
            if dropped:
                await conn.execute(
                    task_logs.insert().values(
                        task_id=task_id,
                        seq=cutoff,
                        at=line.at,
                        level="warning",
                        message=f"[{cutoff} earlier lines dropped: the log keeps the last {cap}]",
                    )
                )

    await store.write(op)


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
