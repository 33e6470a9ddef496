"""The claim among blocked tasks: 100,000 queued tasks that wait for a dependency or an
approval must not slow the claim of the ready ones (CONTRACT §6; issue 14).

On PostgreSQL: `taskstate migrate` on a fresh database, then `blocked` queued tasks with
`blockers = 1` COPYed in (indexes rebuilt, table analysed), then rounds of: 10 ready
tasks created through the store, claimed through the store (`Store.claim`, the
supervisor's own call), timed. The same rounds run first on the empty table, so the two
figures are a pair from one run.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.common import Results, log, migrate, percentile, pg_database, pg_dsn, sqlalchemy_pg_url

COLUMNS = [
    "id",
    "type",
    "name",
    "state",
    "params",
    "trigger",
    "run_at",
    "created_at",
    "updated_at",
    "blockers",
]
CHUNK = 50_000


async def _seed_blocked(dsn: str, count: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        base = datetime.now(UTC) - timedelta(hours=1)
        rng = random.Random(7)
        for start in range(0, count, CHUNK):
            rows = [
                (
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "demo.noop",
                    f"blocked {i}",
                    "queued",
                    "{}",
                    "api",
                    base,
                    base + timedelta(microseconds=i),
                    base,
                    1,
                )
                for i in range(start, min(count, start + CHUNK))
            ]
            await conn.copy_records_to_table("tasks", records=rows, columns=COLUMNS)
        await conn.execute("UPDATE tasks SET root_id = id WHERE root_id IS NULL")
        await conn.execute("VACUUM ANALYZE tasks")
        return time.monotonic() - started
    finally:
        await conn.close()


async def _claim_rounds(url: str, rounds: int, per_round: int) -> list[float]:
    from taskstate.core.bus import EventBus
    from taskstate.core.creation import NewTask
    from taskstate.core.db import open_database
    from taskstate.core.store import Store

    db = open_database(url)
    store = Store(db, EventBus())
    store.start()
    times = []
    try:
        for _ in range(rounds):
            new = [NewTask(type="demo.noop", params={}, name="ready") for _ in range(per_round)]
            await store.create_tasks(new, actor="bench")
            started = time.perf_counter()
            claimed = await store.claim("bench-worker", per_round)
            times.append(1000 * (time.perf_counter() - started))
            assert len(claimed) == per_round, f"claimed {len(claimed)} of {per_round}"
            assert all(row["blockers"] == 0 for row in claimed), "a blocked task was claimed"
    finally:
        await store.close()
        await db.dispose()
    return times


async def claim(results: Results, workdir: Path, *, blocked: int, rounds: int) -> None:
    async with pg_database("claim") as name:
        url = sqlalchemy_pg_url(name)
        await asyncio.to_thread(migrate, url)
        alone = await _claim_rounds(url, rounds, 10)
        seeded = await _seed_blocked(pg_dsn(name), blocked)
        log(f"claim: seeded {blocked} blocked tasks in {seeded:.1f} s")
        among = await _claim_rounds(url, rounds, 10)
    for label, times in (("alone", alone), ("among_blocked", among)):
        results.add(
            f"claim.pg.{label}.p50_ms",
            percentile(times, 50),
            "ms",
            "claim of 10 ready tasks, "
            + ("no other task" if label == "alone" else f"{blocked} blocked beside"),
        )
        results.add(f"claim.pg.{label}.p99_ms", percentile(times, 99), "ms", "the same, p99")
    ratio = percentile(among, 50) / percentile(alone, 50)
    results.add("claim.pg.blocked_over_alone", ratio, "x", f"p50 among {blocked} blocked / p50 alone")
    alone_p50, among_p50 = percentile(alone, 50), percentile(among, 50)
    log(f"claim: p50 {alone_p50:.2f} ms alone, {among_p50:.2f} ms among {blocked} blocked")
