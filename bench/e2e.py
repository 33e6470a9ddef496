"""End-to-end throughput: N no-op tasks through the HTTP API of real `taskstate serve`
processes, and the same workload on Procrastinate.

Timing: from the moment the first batch request is sent to the commit of the last
`completed` (its `finished_at`, on the same machine clock). Completion is detected by
polling a count in the database every 100 ms, which costs the server nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import (
    TRANSITIONS_PER_NOOP,
    Server,
    TaskDb,
    as_epoch,
    cpu_seconds,
    log,
    peer_worker,
    pg_database,
    pg_dsn,
    postgres_cpu_seconds,
    sqlalchemy_pg_url,
    submit_batches,
    task_bodies,
)

#: Jobs one instance runs at once, the same as Procrastinate's worker concurrency.
CONCURRENCY = 10


@dataclass
class E2E:
    n: int
    seconds: float
    submit_seconds: float
    server_cpu_seconds: float
    postgres_cpu_seconds: float
    transitions: int
    #: Committed and rolled-back transactions in the run's database (pg_stat_database).
    commits: int = 0
    rollbacks: int = 0
    #: From the servers' /metrics, when they have it: writer transactions, ops, seconds in them.
    writer: dict[str, float] | None = None

    @property
    def tasks_per_s(self) -> float:
        return self.n / self.seconds

    @property
    def transitions_per_s(self) -> float:
        return self.transitions / self.seconds


async def taskstate_e2e(
    backend: str,
    n: int,
    workdir: Path,
    *,
    instances: int = 1,
    concurrency: int = CONCURRENCY,
    profile_dir: Path | None = None,
    tag: str = "",
) -> E2E:
    if backend == "sqlite":
        assert instances == 1, "one SQLite file, one instance"
        path = workdir / f"e2e-{tag or 'run'}-{time.monotonic_ns()}.db"
        return await _taskstate_e2e(
            backend, f"sqlite+aiosqlite:///{path}", str(path), n, workdir, instances, concurrency, profile_dir
        )
    async with pg_database("e2e") as name:
        return await _taskstate_e2e(
            backend, sqlalchemy_pg_url(name), name, n, workdir, instances, concurrency, profile_dir
        )


async def _taskstate_e2e(
    backend: str,
    url: str,
    where: str,
    n: int,
    workdir: Path,
    instances: int,
    concurrency: int,
    profile_dir: Path | None,
) -> E2E:
    servers = []
    for i in range(instances):
        profile = None
        if profile_dir is not None:
            profile = profile_dir / f"taskstate-{backend}-i{i}-{time.strftime('%H%M%S')}.txt"
        servers.append(
            Server(url, workdir, f"e2e-{backend}-{i}", profile=profile, MAX_CONCURRENT_TASKS=concurrency)
        )
    # Start one at a time: concurrent `serve`s migrate the same new database at once.
    try:
        for server in servers:
            await server.start()
        await asyncio.sleep(0.5)  # let start-up work (first heartbeat, imports) settle
        clients = [httpx.AsyncClient(base_url=s.url, timeout=120) for s in servers]
        try:
            async with TaskDb(backend, where) as db:
                cpu0 = sum(s.cpu_seconds() for s in servers)
                pg0 = postgres_cpu_seconds() if backend == "postgres" else 0.0
                xacts0 = await _xacts(where) if backend == "postgres" else (0, 0)
                t0 = time.time()
                await submit_batches(clients, task_bodies(n))
                submitted = time.time()
                await db.wait_until(
                    "SELECT count(*) FROM tasks WHERE state = 'completed'", n, timeout=max(120, n / 10)
                )
                cpu = sum(s.cpu_seconds() for s in servers) - cpu0
                pg_cpu = postgres_cpu_seconds() - pg0 if backend == "postgres" else 0.0
                xacts = await _xacts(where) if backend == "postgres" else (0, 0)
                last = await db.scalar("SELECT max(finished_at) FROM tasks")
                transitions = int(await db.scalar("SELECT count(*) FROM transitions"))
                writer = await _writer_metrics(clients)
                if transitions != n * TRANSITIONS_PER_NOOP:
                    raise AssertionError(f"{transitions} transition rows for {n} no-op tasks")
        finally:
            for client in clients:
                await client.aclose()
    except Exception:
        for server in servers:
            log(f"server {server.name} log:\n{server.log_text()}")
        raise
    finally:
        for server in servers:
            server.stop()
    return E2E(
        n,
        as_epoch(last) - t0,
        submitted - t0,
        cpu,
        pg_cpu,
        transitions,
        xacts[0] - xacts0[0],
        xacts[1] - xacts0[1],
        writer,
    )


_METRIC_LINE = re.compile(
    r"^(taskstate_(?:writer_batch_ops|db_transaction_seconds)_(?:sum|count)) ([0-9.e+-]+)$"
)


async def _writer_metrics(clients: list[httpx.AsyncClient]) -> dict[str, float] | None:
    """The writers' batch statistics summed over the instances (None if /metrics is absent)."""
    totals: dict[str, float] = {}
    for client in clients:
        response = await client.get("/metrics")
        if response.status_code != 200:
            return None
        for line in response.text.splitlines():
            m = _METRIC_LINE.match(line)
            if m:
                totals[m.group(1)] = totals.get(m.group(1), 0.0) + float(m.group(2))
    return totals or None


async def _xacts(database: str) -> tuple[int, int]:
    """(commits, rollbacks) of one database so far; statistics are flushed within ~1 s."""
    conn = await asyncpg.connect(pg_dsn(database))
    try:
        await asyncio.sleep(1.2)
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1", database
        )
        return int(row["xact_commit"]), int(row["xact_rollback"])
    finally:
        await conn.close()


# -- Procrastinate -------------------------------------------------------------------------


def procrastinate_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("procrastinate")
    except Exception:
        return None


@contextlib.asynccontextmanager
async def procrastinate_worker(
    dsn: str, log: Path, concurrency: int, env: dict[str, str] | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Procrastinate's worker (bench/procrastinate_app.py) on a database with its schema,
    once it is registered in `procrastinate_workers`."""
    args = [dsn, str(concurrency)]
    async with peer_worker("bench.procrastinate_app", args, log, env) as worker:
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


async def procrastinate_e2e(n: int, workdir: Path, *, concurrency: int = CONCURRENCY) -> E2E:
    """Procrastinate 3: schema applied through its API, N jobs deferred in batches of 500,
    one worker process with `concurrency` (listen/notify on, its defaults otherwise)."""
    from bench import procrastinate_app

    async with pg_database("procrastinate") as name:
        dsn = pg_dsn(name)
        app = procrastinate_app.make_app(dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            log_path = workdir / f"procrastinate-worker-{name}.log"
            async with procrastinate_worker(dsn, log_path, concurrency) as worker:
                conn = await asyncpg.connect(dsn)
                try:
                    deferrer = app.configure_task(procrastinate_app.TASK_NAME)
                    cpu0 = _cpu(worker.pid)
                    pg0 = postgres_cpu_seconds()
                    xacts0 = await _xacts(name)
                    t0 = time.time()
                    for start in range(0, n, 500):
                        await deferrer.batch_defer_async(*({} for _ in range(min(500, n - start))))
                    submitted = time.time()
                    deadline = time.monotonic() + max(120, n / 10)
                    while True:
                        done = await conn.fetchval(
                            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
                        )
                        if done >= n:
                            break
                        if time.monotonic() > deadline or worker.poll() is not None:
                            raise RuntimeError(f"Procrastinate: {done} of {n} jobs succeeded")
                        await asyncio.sleep(0.1)
                    cpu = _cpu(worker.pid) - cpu0
                    pg_cpu = postgres_cpu_seconds() - pg0
                    xacts = await _xacts(name)
                    last = await conn.fetchval(
                        "SELECT max(at) FROM procrastinate_events WHERE type = 'succeeded'"
                    )
                    events = await conn.fetchval("SELECT count(*) FROM procrastinate_events")
                finally:
                    await conn.close()
    return E2E(
        n,
        as_epoch(last) - t0,
        submitted - t0,
        cpu,
        pg_cpu,
        int(events),
        xacts[0] - xacts0[0],
        xacts[1] - xacts0[1],
    )


#: PgQueuer's own best settings, as its published benchmark runs it: one asyncpg
#: connection, jobs dequeued 10 at a time, at most 20 running at once.
PGQUEUER_BATCH = 10
PGQUEUER_CONCURRENCY = 20


async def pgqueuer_e2e(n: int, workdir: Path) -> E2E:
    """PgQueuer: schema installed through its API, N jobs enqueued in batches of 500, one
    worker process (asyncpg, one connection, batch 10, at most 20 concurrent)."""
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    from bench import pgqueuer_app

    async with pg_database("pgqueuer") as name:
        dsn = pg_dsn(name)
        conn = await asyncpg.connect(dsn)
        try:
            queries = Queries(AsyncpgDriver(conn))
            await queries.install()
            args = [dsn, str(PGQUEUER_BATCH), str(PGQUEUER_CONCURRENCY)]
            log_path = workdir / f"pgqueuer-worker-{name}.log"
            async with peer_worker("bench.pgqueuer_app", args, log_path) as worker:
                await asyncio.sleep(1.0)  # its LISTEN connection up
                if worker.poll() is not None:
                    raise RuntimeError("the PgQueuer worker did not start")
                cpu0 = _cpu(worker.pid)
                pg0 = postgres_cpu_seconds()
                xacts0 = await _xacts(name)
                t0 = time.time()
                for start in range(0, n, 500):
                    count = min(500, n - start)
                    await queries.enqueue([pgqueuer_app.ENTRYPOINT] * count, [None] * count, [0] * count)
                submitted = time.time()
                deadline = time.monotonic() + max(120, n / 10)
                done_query = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
                while (done := await conn.fetchval(done_query)) < n:
                    if time.monotonic() > deadline or worker.poll() is not None:
                        raise RuntimeError(f"PgQueuer: {done} of {n} jobs succeeded")
                    await asyncio.sleep(0.1)
                cpu = _cpu(worker.pid) - cpu0
                pg_cpu = postgres_cpu_seconds() - pg0
                xacts = await _xacts(name)
                last = await conn.fetchval(
                    "SELECT max(created) FROM pgqueuer_log WHERE status = 'successful'"
                )
                rows = await conn.fetchval("SELECT count(*) FROM pgqueuer_log")
        finally:
            await conn.close()
    return E2E(
        n,
        as_epoch(last) - t0,
        submitted - t0,
        cpu,
        pg_cpu,
        int(rows),
        xacts[0] - xacts0[0],
        xacts[1] - xacts0[1],
    )


def _cpu(pid: int) -> float:
    return cpu_seconds(pid)


def record(results: Any, key: str, label: str, run: E2E) -> None:
    results.add(f"{key}.tasks_per_s", run.tasks_per_s, "tasks/s", f"{label}: throughput")
    results.add(
        f"{key}.transitions_per_s",
        run.transitions_per_s,
        "rows/s",
        f"{label}: durable transition rows/s",
    )
    results.add(f"{key}.seconds", run.seconds, "s", f"{label}: first submit to last completion")
    results.add(
        f"{key}.worker_cpu_ms_per_task",
        1000 * run.server_cpu_seconds / run.n,
        "ms",
        f"{label}: server/worker process CPU per task",
    )
    w = run.writer
    if w and w.get("taskstate_writer_batch_ops_count"):
        batches = w["taskstate_writer_batch_ops_count"]
        results.add(
            f"{key}.writer_ops_per_batch",
            w["taskstate_writer_batch_ops_sum"] / batches,
            "ops",
            f"{label}: writes per writer transaction (/metrics, whole run)",
        )
        results.add(
            f"{key}.writer_ms_per_batch",
            1000 * w["taskstate_db_transaction_seconds_sum"] / batches,
            "ms",
            f"{label}: mean writer transaction, commit included",
        )
        results.add(
            f"{key}.writer_busy_fraction",
            w["taskstate_db_transaction_seconds_sum"] / run.seconds,
            "x",
            f"{label}: time inside writer transactions / run time (per instance summed)",
        )
    if run.commits:
        results.add(
            f"{key}.pg_commits_per_task",
            run.commits / run.n,
            "tx",
            f"{label}: committed transactions per task (pg_stat_database)",
        )
        results.add(
            f"{key}.pg_rollbacks_per_task",
            run.rollbacks / run.n,
            "tx",
            f"{label}: rolled-back transactions per task (pg_stat_database)",
        )
    if run.postgres_cpu_seconds:
        results.add(
            f"{key}.postgres_cpu_ms_per_task",
            1000 * run.postgres_cpu_seconds / run.n,
            "ms",
            f"{label}: PostgreSQL CPU per task (all backends)",
        )
