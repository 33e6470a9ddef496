"""Pickup latency: from a client sending a task to its job's code starting, at a steady
rate, taskstate (through its HTTP API, on each backend) and Procrastinate (`defer_async`,
LISTEN/NOTIFY on) in the same run.

Both systems run the same job body (`bench.stamp.stamp`: the wall-clock time its code
started, appended to a file); the client notes the wall-clock time just before it sends
each task, one task per 1/rate seconds whatever the answers' speed (an open loop). The
first tenth of the tasks warms up and is not counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.common import Results, Server, log, percentile, pg_database, pg_dsn, sqlalchemy_pg_url
from bench.e2e import procrastinate_worker
from bench.pickup_jobs import TYPE as STAMP_TYPE

#: The worker concurrency of every system here (as in the throughput rows).
CONCURRENCY = 10


async def _paced(submit: Callable[[str], Awaitable[object]], n: int, rate: float) -> dict[str, float]:
    """Send n tasks at `rate` per second; answers each key's wall-clock send time."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    sent: dict[str, float] = {}
    pending: list[asyncio.Task[object]] = []
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        key = f"k{i}"
        sent[key] = time.time()
        pending.append(asyncio.create_task(submit(key)))  # type: ignore[arg-type]
    await asyncio.gather(*pending)
    return sent


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _started(path: Path, n: int, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        lines = await asyncio.to_thread(_lines, path)
        if len(lines) >= n:
            return {key: float(at) for key, at in (line.split() for line in lines)}
        if time.monotonic() > deadline:
            raise RuntimeError(f"pickup: {len(lines)} of {n} jobs started")
        await asyncio.sleep(0.1)


def _record(
    results: Results, key: str, label: str, sent: dict[str, float], started: dict[str, float]
) -> None:
    counted = list(sent)[len(sent) // 10 :]
    ms = [1000 * (started[k] - sent[k]) for k in counted]
    results.add(f"pickup.{key}.p50_ms", percentile(ms, 50), "ms", f"pickup {label}: p50")
    results.add(f"pickup.{key}.p99_ms", percentile(ms, 99), "ms", f"pickup {label}: p99")
    log(f"pickup {label}: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms")


async def taskstate_pickup(results: Results, workdir: Path, backend: str, *, rate: float, n: int) -> None:
    stamps = workdir / f"pickup-taskstate-{backend}.txt"
    stamps.unlink(missing_ok=True)

    async def run(url: str) -> None:
        server = Server(
            url,
            workdir,
            f"pickup-{backend}",
            TASKSTATE_JOBS="bench.pickup_jobs",
            TASKSTATE_MAX_CONCURRENT_TASKS=CONCURRENCY,
            BENCH_PICKUP_FILE=stamps,
        )
        await server.start()
        try:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:

                async def submit(key: str) -> None:
                    body = {"type": STAMP_TYPE, "params": {"key": key}}
                    (await client.post("/api/v2/tasks", json=body)).raise_for_status()

                sent = await _paced(submit, n, rate)
            started = await _started(stamps, n, timeout=60)
        finally:
            server.stop()
        _record(results, f"taskstate.{backend}", f"taskstate, {backend}", sent, started)

    if backend == "sqlite":
        await run(f"sqlite+aiosqlite:///{workdir / 'pickup.db'}")
    else:
        async with pg_database("pickup") as name:
            await run(sqlalchemy_pg_url(name))


async def procrastinate_pickup(results: Results, workdir: Path, *, rate: float, n: int) -> None:
    from bench import procrastinate_app

    stamps = workdir / "pickup-procrastinate.txt"
    stamps.unlink(missing_ok=True)
    async with pg_database("pickup_procrastinate") as name:
        dsn = pg_dsn(name)
        app = procrastinate_app.make_app(dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            log_path = workdir / "pickup-procrastinate-worker.log"
            env = {"BENCH_PICKUP_FILE": str(stamps)}
            async with procrastinate_worker(dsn, log_path, CONCURRENCY, env):
                deferrer = app.configure_task(procrastinate_app.STAMP_TASK_NAME)

                async def submit(key: str) -> None:
                    await deferrer.defer_async(key=key)

                sent = await _paced(submit, n, rate)
                started = await _started(stamps, n, timeout=60)
    _record(results, "procrastinate.postgres", "Procrastinate, postgres", sent, started)
