"""The physical limit: the equivalent durable write without taskstate around it.

One transition is an UPDATE of the task's row plus an INSERT of its audit row, committed.
The limits run on taskstate's own schema (`taskstate migrate`, every index in place),
on 10,000 seeded tasks, with `seq` from a sequence:

- pgbench, custom script, prepared protocol, 8 clients, one row pair per transaction;
- asyncpg, 8 connections, one row pair per transaction (a Python driver's single-row limit);
- asyncpg, one connection, 64 row pairs per transaction: a multi-row conditional UPDATE
  (`WHERE id = ANY($1)`) and a multi-row INSERT (`unnest`), as group commit would write;
- the same pgbench and batched loop on a minimal schema (integer key, no secondary index):
  the engine's own ceiling, not taskstate's write;
- SQLite (WAL, synchronous=NORMAL, like taskstate's), one row pair per transaction and 64.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.common import PG_ADMIN_DSN, migrate, pg_database, pg_dsn, sqlalchemy_pg_url

SEEDED = 10_000
BATCH = 64

_PREFIX = "00000000-0000-4000-8000-"


def _task_id(n: int) -> str:
    return f"{_PREFIX}{n:012d}"


_UPDATE_ONE = (
    "UPDATE tasks SET state = CASE state WHEN 'running' THEN 'collecting' ELSE 'running' END, "
    "updated_at = now(), last_reason = 'bench' WHERE id = $1"
)
_INSERT_ONE = (
    "INSERT INTO transitions (seq, task_id, from_state, to_state, at, reason, actor) "
    "VALUES (nextval('bench_seq'), $1, 'running', 'collecting', now(), 'bench', 'bench')"
)
_UPDATE_MANY = (
    "UPDATE tasks SET state = CASE state WHEN 'running' THEN 'collecting' ELSE 'running' END, "
    "updated_at = now(), last_reason = 'bench' "
    "WHERE id = ANY($1::text[]) AND state IN ('running', 'collecting')"
)
_INSERT_MANY = (
    "INSERT INTO transitions (seq, task_id, from_state, to_state, at, reason, actor) "
    "SELECT nextval('bench_seq'), t, 'running', 'collecting', now(), 'bench', 'bench' "
    "FROM unnest($1::text[]) AS t"
)

MINIMAL_SCHEMA = [
    "CREATE TABLE min_tasks (id int PRIMARY KEY, state text NOT NULL, updated_at timestamptz NOT NULL)",
    "CREATE TABLE min_transitions (seq bigserial PRIMARY KEY, task_id int NOT NULL, from_state text, "
    "to_state text NOT NULL, at timestamptz NOT NULL)",
    f"INSERT INTO min_tasks SELECT g, 'running', now() FROM generate_series(1, {SEEDED}) g",
]

_FLIP = "state = CASE state WHEN 'running' THEN 'collecting' ELSE 'running' END"

PGBENCH_MINIMAL = "\n".join(
    [
        f"\\set n random(1, {SEEDED})",
        "BEGIN;",
        f"UPDATE min_tasks SET {_FLIP}, updated_at = now() WHERE id = :n;",
        "INSERT INTO min_transitions (task_id, from_state, to_state, at) "
        "VALUES (:n, 'running', 'collecting', now());",
        "END;",
        "",
    ]
)

_UPDATE_MANY_MINIMAL = (
    "UPDATE min_tasks SET state = CASE state WHEN 'running' THEN 'collecting' ELSE 'running' END, "
    "updated_at = now() WHERE id = ANY($1::int[])"
)
_INSERT_MANY_MINIMAL = (
    "INSERT INTO min_transitions (task_id, from_state, to_state, at) "
    "SELECT t, 'running', 'collecting', now() FROM unnest($1::int[]) AS t"
)

_ID = f"'{_PREFIX}' || lpad(:n::text, 12, '0')"

PGBENCH_SCRIPT = "\n".join(
    [
        f"\\set n random(1, {SEEDED})",
        "BEGIN;",
        f"UPDATE tasks SET {_FLIP}, updated_at = now(), last_reason = 'bench' WHERE id = {_ID};",
        "INSERT INTO transitions (seq, task_id, from_state, to_state, at, reason, actor) "
        f"VALUES (nextval('bench_seq'), {_ID}, 'running', 'collecting', now(), 'bench', 'bench');",
        "END;",
        "",
    ]
)


def _seed_rows(n: int) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    return [
        (_task_id(i), "demo.noop", f"task {i}", "running", "{}", "api", now, now, now, "bench")
        for i in range(1, n + 1)
    ]


_SEED_COLUMNS = [
    "id",
    "type",
    "name",
    "state",
    "params",
    "trigger",
    "run_at",
    "created_at",
    "updated_at",
    "last_reason",
]


class PgLimits:
    """A migrated, seeded PostgreSQL database to run the limits against."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dsn = pg_dsn(name)

    async def prepare(self) -> None:
        await asyncio.to_thread(migrate, sqlalchemy_pg_url(self.name))
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.copy_records_to_table("tasks", records=_seed_rows(SEEDED), columns=_SEED_COLUMNS)
            await conn.execute("CREATE SEQUENCE bench_seq")
            for statement in MINIMAL_SCHEMA:
                await conn.execute(statement)
            await conn.execute("VACUUM ANALYZE tasks")
            await conn.execute("VACUUM ANALYZE min_tasks")
        finally:
            await conn.close()

    def pgbench(self, workdir: Path, seconds: float, clients: int = 8, *, minimal: bool = False) -> float:
        """Transactions per second (one row pair each), prepared protocol."""
        binary = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
        script = workdir / ("minimal.pgbench" if minimal else "transition.pgbench")
        script.write_text(PGBENCH_MINIMAL if minimal else PGBENCH_SCRIPT)
        admin = PG_ADMIN_DSN.split("://", 1)[1]
        user_host = admin.rsplit("/", 1)[0]
        user, _, hostport = user_host.rpartition("@")
        host, _, port = hostport.partition(":")
        out = subprocess.run(
            [
                binary,
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(int(seconds)),
                "-f",
                str(script),
                "-h",
                host,
                "-p",
                port or "5432",
                "-U",
                user or "postgres",
                self.name,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
        if match is None:
            raise RuntimeError(f"pgbench said: {out.stdout}\n{out.stderr}")
        return float(match.group(1))

    async def asyncpg_single(self, seconds: float, connections: int = 8) -> float:
        """Transactions per second, one row pair each, `connections` concurrent loops."""
        conns = [await asyncpg.connect(self.dsn) for _ in range(connections)]
        done = 0
        deadline = time.monotonic() + seconds

        async def loop(conn: asyncpg.Connection) -> None:
            nonlocal done
            update = await conn.prepare(_UPDATE_ONE)
            insert = await conn.prepare(_INSERT_ONE)
            rng = random.Random()
            while time.monotonic() < deadline:
                task_id = _task_id(rng.randint(1, SEEDED))
                async with conn.transaction():
                    await update.fetch(task_id)
                    await insert.fetch(task_id)
                done += 1

        try:
            started = time.monotonic()
            await asyncio.gather(*(loop(c) for c in conns))
            return done / (time.monotonic() - started)
        finally:
            for conn in conns:
                await conn.close()

    async def asyncpg_batched(self, seconds: float, batch: int = BATCH, *, minimal: bool = False) -> float:
        """Row pairs per second, `batch` per transaction, one connection."""
        conn = await asyncpg.connect(self.dsn)
        try:
            update = await conn.prepare(_UPDATE_MANY_MINIMAL if minimal else _UPDATE_MANY)
            insert = await conn.prepare(_INSERT_MANY_MINIMAL if minimal else _INSERT_MANY)
            rng = random.Random()
            rows = 0
            started = time.monotonic()
            deadline = started + seconds
            while time.monotonic() < deadline:
                picked = rng.sample(range(1, SEEDED + 1), batch)
                ids: list[object] = list(picked) if minimal else [_task_id(i) for i in picked]
                async with conn.transaction():
                    await update.fetch(ids)
                    await insert.fetch(ids)
                rows += batch
            return rows / (time.monotonic() - started)
        finally:
            await conn.close()


def sqlite_limits(workdir: Path, seconds: float) -> tuple[float, float]:
    """SQLite on taskstate's schema, WAL + synchronous=NORMAL: (single tx/s, batched rows/s)."""
    path = workdir / f"limits-{time.monotonic_ns()}.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO tasks ({', '.join(_SEED_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*r[:6], now, now, now, r[9]) for r in _seed_rows(SEEDED)],
        )
        conn.execute("COMMIT")
        seq = 0
        update = (
            "UPDATE tasks SET state = CASE state WHEN 'running' THEN 'collecting' ELSE 'running' END, "
            "updated_at = ?, last_reason = 'bench' WHERE id = ?"
        )
        insert = (
            "INSERT INTO transitions (seq, task_id, from_state, to_state, at, reason, actor) "
            "VALUES (?, ?, 'running', 'collecting', ?, 'bench', 'bench')"
        )
        rng = random.Random()

        def run(batch: int) -> float:
            nonlocal seq
            rows = 0
            started = time.monotonic()
            while time.monotonic() < started + seconds:
                ids = [_task_id(i) for i in rng.sample(range(1, SEEDED + 1), batch)]
                at = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(update, [(at, i) for i in ids])
                pairs = []
                for i in ids:
                    seq += 1
                    pairs.append((seq, i, at))
                conn.executemany(insert, pairs)
                conn.execute("COMMIT")
                rows += batch
            return rows / (time.monotonic() - started)

        return run(1), run(BATCH)
    finally:
        conn.close()


async def pg_limits(workdir: Path, seconds: float) -> dict[str, float]:
    """Every PostgreSQL limit, on one fresh database."""
    async with pg_database("limits") as name:
        limits = PgLimits(name)
        await limits.prepare()
        return {
            "pgbench": await asyncio.to_thread(limits.pgbench, workdir, seconds),
            "asyncpg_single": await limits.asyncpg_single(seconds / 2),
            "asyncpg_batched": await limits.asyncpg_batched(seconds / 2),
            "pgbench_minimal": await asyncio.to_thread(limits.pgbench, workdir, seconds / 2, minimal=True),
            "asyncpg_batched_minimal": await limits.asyncpg_batched(seconds / 2, minimal=True),
        }
