"""Insights at scale: `GET /api/v2/insights` over 1,000,000 tasks in PostgreSQL.

The tasks are the history scenario's (`bench.history.seed`: COPY, then the indexes,
then ANALYSE): finished tasks of five types created over the last 10 days, so that the
default window (the last 24 hours, 15-minute buckets) holds about 100,000 of them and
a type filter about a fifth of that. Timed through the HTTP API, one request at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from bench.common import Results, Server, log, migrate, percentile, pg_database, pg_dsn, sqlalchemy_pg_url
from bench.history import _time, seed

CASES = {
    "default": ("default window (24 h, 15 min buckets)", "/api/v2/insights"),
    "filtered": ("24 h window, one type of five", "/api/v2/insights?type=etl"),
    "hours": ("3 h window, 1 min buckets", "/api/v2/insights?window=3h&interval=1m"),
}


async def insights(results: Results, workdir: Path, *, total: int, samples: int) -> None:
    async with pg_database("insights") as name:
        url = sqlalchemy_pg_url(name)
        await asyncio.to_thread(migrate, url)
        timing = await seed(pg_dsn(name), total)
        log(
            f"insights: seeded {total} tasks in {timing['load_s']:.1f} s"
            f" + {timing['index_s']:.1f} s of indexes"
        )
        server = Server(url, workdir, "insights", TASK_HISTORY_RETENTION_DAYS=3650)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                window = (await client.get("/api/v2/insights")).json()
                finished = sum(
                    sum(b[s] for s in ("completed", "failed", "cancelled")) for b in window["throughput"]
                )
                for key, (label, path) in CASES.items():
                    lat = await _time(client, path, samples)
                    results.add(
                        f"insights.pg.{key}.p50_ms", percentile(lat, 50), "ms", f"insights {label}: p50"
                    )
                    results.add(
                        f"insights.pg.{key}.p99_ms", percentile(lat, 99), "ms", f"insights {label}: p99"
                    )
        finally:
            server.stop()
        results.facts["insights_rows"] = total
        results.facts["insights_default_window_finished"] = finished
