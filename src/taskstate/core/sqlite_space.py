"""Giving the space of deleted rows back to the file system, on SQLite.

SQLite keeps the pages that deletes free inside the file, for reuse: after a
retention clean-up (or the log of a job that wrote a million lines), the file
stays as large as it ever was. Databases are created with
`auto_vacuum = INCREMENTAL` (see db.py), so that freed pages can be returned
a few at a time, without the full rewrite (and the exclusive lock for all of
it) that `VACUUM` is; a database created before that is converted once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

INCREMENTAL = 2
#: Pages returned per step (4 MiB at the default page size): each step holds the write
#: lock only briefly, so that other writes go on in between.
PAGES_PER_STEP = 1024


async def _driver(engine: AsyncEngine) -> tuple[Any, Any]:
    conn = await engine.connect()
    raw = await conn.get_raw_connection()
    return conn, raw.driver_connection


async def _scalar(driver: Any, sql: str) -> int:
    async with driver.execute(sql) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def ensure_incremental(engine: AsyncEngine) -> bool:
    """Convert a database made without incremental auto-vacuum (one full VACUUM, once);
    True if it did."""
    conn, driver = await _driver(engine)
    try:
        if await _scalar(driver, "PRAGMA auto_vacuum") == INCREMENTAL:
            return False
        log.info("converting the SQLite database to incremental auto-vacuum (once; VACUUM)")
        await driver.execute("PRAGMA auto_vacuum = INCREMENTAL")
        await driver.execute("VACUUM")
        return True
    finally:
        await conn.close()


async def give_back_free_pages(engine: AsyncEngine) -> int:
    """Return every free page to the file system, a step at a time; answers how many.

    Each step runs as a script (`PRAGMA incremental_vacuum(N)` executed as a statement
    returns only one page per call), outside any transaction of ours, taking SQLite's
    write lock as any writer does.
    """
    conn, driver = await _driver(engine)
    returned = 0
    try:
        while (free := await _scalar(driver, "PRAGMA freelist_count")) > 0:
            await driver.executescript(f"PRAGMA incremental_vacuum({min(free, PAGES_PER_STEP)});")
            returned += min(free, PAGES_PER_STEP)
            await asyncio.sleep(0)
        await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await conn.close()
    return returned
