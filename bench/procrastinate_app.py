"""The peer: a Procrastinate app with one no-op task, and its worker as a process.

`python -m bench.procrastinate_app DSN CONCURRENCY` runs one worker until SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys

import procrastinate

from bench.stamp import stamp

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


async def _work(dsn: str, concurrency: int) -> None:
    app = make_app(dsn)
    async with app.open_async():
        await app.run_worker_async(concurrency=concurrency, wait=True, install_signal_handlers=True)


if __name__ == "__main__":
    asyncio.run(_work(sys.argv[1], int(sys.argv[2])))
