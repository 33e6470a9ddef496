"""History at scale: `GET /api/v2/tasks` over 1,000,000 tasks in PostgreSQL.

Seeding: `taskstate migrate` on a fresh database, then the tasks table's secondary
indexes are dropped (their definitions kept from pg_indexes), the rows are COPYed in
with asyncpg's `copy_records_to_table`, the indexes are created again from their
definitions and the table is analysed. Only `tasks` is seeded (the history reads no
other table). Tasks: 90% completed, 7% failed, 3% cancelled, five types, created over
the last 10 days, 1 ms apart at most.

Timed through the HTTP API, one request at a time: the first page (no filter, and with
a state + type filter), the 50th page reached by following `next_cursor`, and a page in
the middle of the table from a constructed cursor (taskstate's own `encode_cursor`).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from bench.common import Results, Server, log, migrate, percentile, pg_database, pg_dsn, sqlalchemy_pg_url

TYPES = ["demo.noop", "demo.sleep", "train", "etl", "agent.run"]
COLUMNS = [
    "id",
    "type",
    "name",
    "state",
    "progress",
    "params",
    "result",
    "error",
    "trigger",
    "run_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "last_reason",
]
CHUNK = 100_000


def _rows(start: int, count: int, total: int, base: datetime, rng: random.Random) -> list[tuple[object, ...]]:
    span = timedelta(days=10) / total
    rows = []
    for i in range(start, start + count):
        created = base + span * i
        roll = rng.random()
        state = "completed" if roll < 0.90 else "failed" if roll < 0.97 else "cancelled"
        started = created + timedelta(milliseconds=50)
        finished = started + timedelta(seconds=rng.random() * 60)
        rows.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                TYPES[i % len(TYPES)],
                f"task {i} {TYPES[i % len(TYPES)]}",
                state,
                100.0 if state == "completed" else 40.0,
                "{}",
                '{"ok": true}' if state == "completed" else None,
                "boom" if state == "failed" else None,
                "api",
                created,
                created,
                finished,
                started,
                finished,
                state,
            )
        )
    return rows


async def seed(dsn: str, total: int) -> dict[str, float]:
    """Bulk-load `total` finished tasks; answers (load seconds, index seconds)."""
    conn = await asyncpg.connect(dsn)
    try:
        indexes = await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'tasks' "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        rng = random.Random(42)
        base = datetime.now(UTC) - timedelta(days=10, hours=1)
        started = time.monotonic()
        for start in range(0, total, CHUNK):
            rows = _rows(start, min(CHUNK, total - start), total, base, rng)
            await conn.copy_records_to_table("tasks", records=rows, columns=COLUMNS)
        loaded = time.monotonic()
        for row in indexes:
            await conn.execute(row["indexdef"])
        await conn.execute("VACUUM ANALYZE tasks")
        indexed = time.monotonic()
        count = await conn.fetchval("SELECT count(*) FROM tasks")
        assert count == total, count
        return {"load_s": loaded - started, "index_s": indexed - loaded}
    finally:
        await conn.close()


async def _time(client: httpx.AsyncClient, path: str, times: int) -> list[float]:
    out = []
    for _ in range(3):
        (await client.get(path)).raise_for_status()
    for _ in range(times):
        t = time.perf_counter()
        response = await client.get(path)
        out.append(1000 * (time.perf_counter() - t))
        response.raise_for_status()
    return out


async def history(results: Results, workdir: Path, *, total: int, samples: int, deep_pages: int) -> None:
    from taskstate.core.reads import encode_cursor

    async with pg_database("history") as name:
        url = sqlalchemy_pg_url(name)
        await asyncio.to_thread(migrate, url)
        timing = await seed(pg_dsn(name), total)
        log(
            f"history: seeded {total} tasks in {timing['load_s']:.1f} s"
            f" + {timing['index_s']:.1f} s of indexes"
        )
        results.add("history.pg.seed_rows_per_s", total / timing["load_s"], "rows/s", "history: COPY rate")
        results.add("history.pg.seed_index_s", timing["index_s"], "s", "history: index build + analyse")
        conn = await asyncpg.connect(pg_dsn(name))
        try:
            middle = await conn.fetchrow(
                "SELECT created_at, id FROM tasks ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
                total // 2,
            )
            # The count every history page runs, by itself (evidence for the page times).
            count_ms = []
            filtered_ms = []
            for _ in range(5):
                t = time.perf_counter()
                await conn.fetchval("SELECT count(*) FROM tasks")
                count_ms.append(1000 * (time.perf_counter() - t))
                t = time.perf_counter()
                await conn.fetchval(
                    "SELECT count(*) FROM tasks WHERE state = ANY($1::text[]) AND type = $2",
                    ["completed"],
                    "demo.noop",
                )
                filtered_ms.append(1000 * (time.perf_counter() - t))
        finally:
            await conn.close()
        middle_cursor = encode_cursor(middle["created_at"], middle["id"])
        server = Server(url, workdir, "history", TASK_HISTORY_RETENTION_DAYS=3650)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                filtered = "state=completed&type=demo.noop&limit=50"
                cursor = None
                walk_ms = []
                for _ in range(deep_pages):
                    path = f"/api/v2/tasks?{filtered}" + (f"&cursor={cursor}" if cursor else "")
                    t = time.perf_counter()
                    response = await client.get(path)
                    walk_ms.append(1000 * (time.perf_counter() - t))
                    response.raise_for_status()
                    cursor = response.json()["next_cursor"]
                    assert cursor, "history ended early"
                cases = {
                    "first_page": ("first page of 50, no filter", "/api/v2/tasks?limit=50"),
                    "first_page_filtered": (
                        "first page of 50, state+type filter",
                        f"/api/v2/tasks?{filtered}",
                    ),
                    "deep_page_filtered": (
                        f"page {deep_pages + 1} (followed cursors), state+type filter",
                        f"/api/v2/tasks?{filtered}&cursor={cursor}",
                    ),
                    "middle_page": (
                        f"page at row {total // 2:,} (constructed cursor), no filter",
                        f"/api/v2/tasks?limit=50&cursor={middle_cursor}",
                    ),
                }
                for key, (label, path) in cases.items():
                    lat = await _time(client, path, samples)
                    results.add(
                        f"history.pg.{key}.p50_ms", percentile(lat, 50), "ms", f"history {label}: p50"
                    )
                    results.add(f"history.pg.{key}.max_ms", max(lat), "ms", f"history {label}: max")
                results.add(
                    "history.pg.cursor_walk_page_ms",
                    statistics.median(walk_ms),
                    "ms",
                    f"history: median page while following {deep_pages} cursors",
                )
        finally:
            server.stop()
        results.add(
            "history.pg.count_all_ms", statistics.median(count_ms), "ms", "history: SELECT count(*) alone"
        )
        results.add(
            "history.pg.count_filtered_ms",
            statistics.median(filtered_ms),
            "ms",
            "history: the page's filtered count(*) alone",
        )
        results.facts["history_rows"] = total
