"""The peer: a Procrastinate app with one no-op task, and its worker as a process.

`python -m bench.procrastinate_app DSN CONCURRENCY` runs one worker until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import asyncpg
import procrastinate

from bench.stamp import stamp

#: The repository: the worker runs with it on its path, to import this module.
REPO = str(Path(__file__).resolve().parent.parent)
TASK_NAME = "bench.noop"
#: Writes when its code started, like taskstate's `bench.stamp` (bench/pickup_jobs.py).
STAMP_TASK_NAME = "bench.stamp"


def make_app(dsn: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name=TASK_NAME)
    async def noop() -> None:
        """Does nothing, like taskstate's demo.noop."""

    @app.task(name=STAMP_TASK_NAME)
    async def stamp_start(key: str) -> None:
        stamp(key)

    return app


@contextlib.asynccontextmanager
async def running_worker(
    dsn: str, log: Path, concurrency: int, env: Mapping[str, str] | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A worker process (this module) on a database with the schema applied: started, seen
    registered in `procrastinate_workers`, stopped with SIGTERM on the way out."""
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.procrastinate_app", dsn, str(concurrency)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        conn = await asyncpg.connect(dsn)
        try:
            deadline = time.monotonic() + 60
            while not await conn.fetchval("SELECT count(*) FROM procrastinate_workers"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Procrastinate worker did not start")
                await asyncio.sleep(0.05)
        finally:
            await conn.close()
        await asyncio.sleep(0.5)
        yield worker
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


async def _work(dsn: str, concurrency: int) -> None:
    app = make_app(dsn)
    async with app.open_async():
        await app.run_worker_async(concurrency=concurrency, wait=True, install_signal_handlers=True)


if __name__ == "__main__":
    asyncio.run(_work(sys.argv[1], int(sys.argv[2])))
