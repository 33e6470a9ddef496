"""Memory: RSS of the server process (VmRSS from /proc), each on a fresh instance:

- idle: started, 3 s of nothing;
- with 10,000 queued tasks (created through the batch endpoint with `run_at` a day ahead,
  so that they stay queued);
- with 1,000 idle WebSocket subscribers (connected after the idle reading; the per-
  subscriber figure is the RSS difference / 1,000), with and without permessage-deflate
  (browsers offer it, and the server accepts it).
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import httpx

from bench.common import Results, Server, future, submit_batches, task_bodies
from bench.latency import SubscriberGroup, database

QUEUED = 10_000
SUBSCRIBERS = 1_000


async def memory(
    results: Results, backend: str, workdir: Path, *, queued: int = QUEUED, subscribers: int = SUBSCRIBERS
) -> None:
    label = f"server RSS, {backend}"
    async with database(backend, workdir, "memory") as url:
        server = Server(url, workdir, f"memory-{backend}-queued")
        await server.start()
        try:
            await asyncio.sleep(3)
            idle = server.rss_kib()
            results.add(f"memory.{backend}.idle_mib", idle / 1024, "MiB", f"{label}: idle")
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                await submit_batches([client], task_bodies(queued, run_at=future()))
            await asyncio.sleep(3)
            results.add(
                f"memory.{backend}.queued_{queued}_mib",
                server.rss_kib() / 1024,
                "MiB",
                f"{label}: with {queued:,} queued tasks",
            )
        finally:
            server.stop()
    for compression in ("deflate", None):
        tag = "deflate" if compression else "plain"
        async with database(backend, workdir, "memory") as url:
            server = Server(url, workdir, f"memory-{backend}-ws")
            await server.start()
            try:
                await asyncio.sleep(3)
                before = server.rss_kib()
                group = SubscriberGroup(server.ws_url, subscribers, compression)
                await group.open()
                try:
                    gc.collect()
                    await asyncio.sleep(3)
                    after = server.rss_kib()
                finally:
                    await group.close()
            finally:
                server.stop()
        results.add(
            f"memory.{backend}.ws_{subscribers}_{tag}_mib",
            after / 1024,
            "MiB",
            f"{label}: with {subscribers:,} idle subscribers ({tag})",
        )
        results.add(
            f"memory.{backend}.ws_{tag}_kib_per_subscriber",
            (after - before) / subscribers,
            "KiB",
            f"{label}: per idle subscriber ({tag})",
        )
