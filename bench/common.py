"""What every scenario shares: results, statistics, servers, databases, clients.

Nothing here needs more than the project's own dependencies (httpx, websockets,
asyncpg): the optional peers (procrastinate) are imported by their scenario only.
Memory and CPU are read from /proc, so the suite runs on Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tests.support import databases
from tests.support.processes import REPO, ServerProcess, stop_gracefully

#: TASKSTATE_BENCH_PG, else the tests' (TASKSTATE_TEST_PG, else the local default).
PG_ADMIN_DSN = os.environ.get("TASKSTATE_BENCH_PG") or databases.PG_ADMIN_DSN

#: Transitions a demo.noop task makes: queued, preparing, running, collecting, completed.
TRANSITIONS_PER_NOOP = 5


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Metric:
    key: str
    unit: str
    label: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "median": statistics.median(self.samples),
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": self.samples,
            "note": self.note,
        }


class Results:
    """Samples per metric (one per repetition), plus skipped scenarios and free-form facts."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.skipped: dict[str, str] = {}
        self.facts: dict[str, Any] = {}

    def add(self, key: str, value: float, unit: str, label: str, note: str = "") -> None:
        metric = self.metrics.get(key)
        if metric is None:
            metric = self.metrics[key] = Metric(key, unit, label)
        metric.samples.append(float(value))
        if note:
            metric.note = note

    def skip(self, name: str, reason: str) -> None:
        log(f"skipped {name}: {reason}")
        self.skipped[name] = reason

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": {k: m.summary() for k, m in self.metrics.items() if m.samples},
            "skipped": self.skipped,
            "facts": self.facts,
        }


# -- processes -----------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size of one process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (itself, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def postgres_cpu_seconds() -> float:
    """CPU time of every postgres process on this machine (other users' load included)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            total += cpu_seconds(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return total


def load_average() -> float:
    return os.getloadavg()[0]


def _child_of(parent: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            return int(entry.name)
    return None


class Server(ServerProcess):
    """One `python -m taskstate serve` subprocess on a free loopback port (the tests' own
    `ServerProcess`), optionally under py-spy.

    The environment is the README's configuration table; the defaults here are the
    product's own except for the log level (warning) and the bench's explicit overrides.
    """

    def __init__(self, database_url: str, workdir: Path, name: str, profile: Path | None = None, **env: Any):
        super().__init__(database_url, workdir, name=name, defaults={"TASKSTATE_DEMO_JOBS": "1"}, **env)
        self.profile = profile
        self.started_at = 0.0
        self._child_pid: int | None = None

    @property
    def pid(self) -> int:
        """The server's own pid (under py-spy, the child of py-spy)."""
        assert self.process is not None
        if self.profile is None:
            return self.process.pid
        if self._child_pid is None:
            for _ in range(400):
                self._child_pid = _child_of(self.process.pid)
                if self._child_pid is not None:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("py-spy did not start the server")
        return self._child_pid

    def command(self) -> list[str]:
        if self.profile is None:
            return super().command()
        return [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(self.profile),
            "--",
            *super().command(),
        ]

    async def start(self, timeout: float = 60) -> float:
        """Start and wait for /readyz; answers the seconds it took."""
        self._child_pid = None
        self.started_at = time.monotonic()
        return await super().start(timeout)

    def stop(self) -> None:
        """Under py-spy, the server gets the SIGTERM: py-spy itself, signalled, would exit
        without writing its profile; it writes it when the server has exited."""
        if self.profile is not None and self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(60)
        super().stop()

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


@contextlib.asynccontextmanager
async def peer_worker(
    module: str, args: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A peer's worker, `python -m <module> <args>` from the repository, its output in `log`;
    stopped with SIGTERM on the way out (killed if it does not stop within 30 s)."""
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield worker
    finally:
        stop_gracefully(worker)


@contextlib.asynccontextmanager
async def running(*servers: Server) -> AsyncIterator[None]:
    try:
        await asyncio.gather(*(s.start() for s in servers))
        yield
    finally:
        for s in servers:
            s.stop()


# -- databases -----------------------------------------------------------------------------


def pg_dsn(database: str) -> str:
    return databases.pg_dsn(database, PG_ADMIN_DSN)


def sqlalchemy_pg_url(database: str) -> str:
    return databases.sqlalchemy_pg_url(database, PG_ADMIN_DSN)


async def pg_available() -> bool:
    return await databases.pg_available(PG_ADMIN_DSN)


@contextlib.asynccontextmanager
async def pg_database(prefix: str = "bench") -> AsyncIterator[str]:
    """A fresh PostgreSQL database (its name), dropped afterwards."""
    async with databases.fresh_pg_database(prefix=f"taskstate_{prefix}", admin_dsn=PG_ADMIN_DSN) as url:
        yield databases.database_name(url)


class TaskDb:
    """Direct reads of a taskstate database (PostgreSQL or SQLite), for completion checks.

    The bench polls the database rather than the API so that watching costs the server
    nothing; exact start and end times come from the rows' own timestamps.
    """

    def __init__(self, backend: str, where: str) -> None:
        self.backend = backend
        self.where = where  # a database name or a SQLite file path
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def __aenter__(self) -> TaskDb:
        if self.backend == "postgres":
            self._pg = await asyncpg.connect(pg_dsn(self.where))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()

    def _sqlite_query(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._sqlite is None:
            self._sqlite = sqlite3.connect(self.where, timeout=30, check_same_thread=False)
        return self._sqlite.execute(sql, tuple(args)).fetchall()

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """`sql` with `?` placeholders (rewritten to $n for PostgreSQL)."""
        if self._pg is not None:
            n = 0
            parts = sql.split("?")
            text = parts[0]
            for part in parts[1:]:
                n += 1
                text += f"${n}{part}"
            return [tuple(r) for r in await self._pg.fetch(text, *args)]
        return await asyncio.to_thread(self._sqlite_query, sql, args)

    async def scalar(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def wait_until(self, sql: str, target: int, timeout: float, poll: float = 0.1) -> float:
        """Poll a count until it reaches `target`; answers the wall-clock time it did."""
        deadline = time.monotonic() + timeout
        while True:
            value = int(await self.scalar(sql) or 0)
            if value >= target:
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sql!r} reached {value} of {target} in {timeout:.0f}s")
            await asyncio.sleep(poll)


def as_epoch(value: Any) -> float:
    """A timestamp column (aware datetime from asyncpg, naive UTC text from SQLite) as epoch seconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def parse_at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def migrate(database_url: str) -> None:
    """`taskstate migrate --database-url …`, as an operator would run it."""
    subprocess.run(
        [sys.executable, "-m", "taskstate", "migrate", "--database-url", database_url],
        check=True,
        capture_output=True,
        cwd=REPO,
    )


# -- clients -------------------------------------------------------------------------------


def task_bodies(n: int, type: str = "demo.noop", **extra: Any) -> list[dict[str, Any]]:
    return [{"type": type, **extra} for _ in range(n)]


async def submit_batches(
    clients: Sequence[httpx.AsyncClient], bodies: Sequence[dict[str, Any]], batch: int = 500
) -> list[str]:
    """POST /api/v2/tasks/batch, `batch` tasks a request, round-robin over `clients`, in order."""
    ids: list[str] = []
    for i, start in enumerate(range(0, len(bodies), batch)):
        client = clients[i % len(clients)]
        response = await client.post(
            "/api/v2/tasks/batch", json={"tasks": list(bodies[start : start + batch])}
        )
        if response.status_code != 201:
            raise RuntimeError(f"batch create answered {response.status_code}: {response.text[:500]}")
        ids.extend(item["id"] for item in response.json()["items"])
    return ids


def future(days: float = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def dump_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
