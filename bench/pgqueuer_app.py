"""The second peer: PgQueuer with one no-op entrypoint, and its worker as a process.

`python -m bench.pgqueuer_app DSN BATCH CONCURRENCY` runs one worker (asyncpg, one
connection, as PgQueuer's own benchmark does) until SIGTERM. PgQueuer records per job:
its row in `pgqueuer` (deleted once done), three rows in `pgqueuer_log` (queued, picked,
successful) and an aggregated `pgqueuer_statistics` row, all on durable tables.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

ENTRYPOINT = "bench_noop"


async def _work(dsn: str, batch: int, concurrency: int) -> None:
    conn = await asyncpg.connect(dsn)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        """Does nothing, like taskstate's demo.noop."""

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    try:
        await pgq.run(batch_size=batch, max_concurrent_tasks=concurrency)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(_work(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
