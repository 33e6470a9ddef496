"""`python -m bench`: taskstate's benchmark suite.

Runs the scenarios (all by default, or `--only a,b`), prints a table (the median of the
repetitions, with min and max) and writes JSON (`bench/results/latest.json` unless
`--json PATH`). Throughput comparisons (taskstate vs Procrastinate vs the physical
limit, and the scale-out rows) run interleaved within each repetition, and their ratios
are taken per repetition: the machine is shared and noisy.

    python -m bench                     # the full suite (~30 min on 2 cores)
    python -m bench --quick             # smoke run: N=200, 1 repetition, small sizes
    python -m bench --only e2e,procrastinate,physical --n 5000 --repeat 3
    python -m bench --only e2e --backends postgres --profile bench/results/profile
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import e2e as e2e_mod
from bench.common import REPO, Results, dump_json, load_average, log, pg_available

SCENARIOS = [
    "e2e",
    "procrastinate",
    "pgqueuer",
    "physical",
    "scaleout",
    "ws_latency",
    "fanout",
    "api_latency",
    "history",
    "insights",
    "claim",
    "pickup",
    "recovery",
    "memory",
]
BACKENDS = ["sqlite", "postgres"]
DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"


@dataclass
class Sizes:
    """Everything that --quick makes small."""

    n: int = 5_000
    repeat: int = 3
    physical_seconds: float = 10
    ws_counts: tuple[int, ...] = (1, 100, 1_000)
    ws_probes: int = 20
    fanout_k: int = 5_000
    fanout_probes: int = 5
    api_seeded: int = 2_000
    api_active: int = 50
    api_clients: int = 50
    api_requests: int = 2_000
    history_rows: int = 1_000_000
    history_samples: int = 20
    history_deep_pages: int = 50
    insights_rows: int = 1_000_000
    insights_samples: int = 20
    claim_blocked: int = 100_000
    claim_rounds: int = 50
    memory_queued: int = 10_000
    memory_subscribers: int = 1_000
    #: Pickup latency: tasks sent at a steady rate for this many seconds.
    pickup_rate: float = 200
    pickup_seconds: float = 10
    scaleout_instances: tuple[int, ...] = (2, 3)
    #: Scale-out runs in the first repetitions only (each 3-instance run costs minutes).
    scaleout_repeat: int = 1

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            n=200,
            repeat=1,
            physical_seconds=2,
            ws_counts=(1, 100),
            ws_probes=5,
            fanout_k=200,
            fanout_probes=2,
            api_seeded=200,
            api_active=10,
            api_clients=50,
            api_requests=300,
            history_rows=20_000,
            history_samples=5,
            history_deep_pages=5,
            insights_rows=20_000,
            insights_samples=5,
            claim_blocked=5_000,
            claim_rounds=10,
            memory_queued=1_000,
            memory_subscribers=100,
            pickup_rate=50,
            pickup_seconds=2,
            scaleout_instances=(2,),
        )


# -- ratios and targets --------------------------------------------------------------------

#: (ratio key, label, numerator metric, denominator metric)
RATIOS = [
    (
        "ratio.postgres.taskstate_over_procrastinate",
        "taskstate (PostgreSQL) / Procrastinate, tasks/s",
        "e2e.taskstate.postgres.tasks_per_s",
        "e2e.procrastinate.postgres.tasks_per_s",
    ),
    (
        "ratio.sqlite.taskstate_over_procrastinate",
        "taskstate (SQLite) / Procrastinate (PostgreSQL), tasks/s",
        "e2e.taskstate.sqlite.tasks_per_s",
        "e2e.procrastinate.postgres.tasks_per_s",
    ),
    (
        "ratio.postgres.taskstate_over_pgqueuer",
        "taskstate (PostgreSQL) / PgQueuer, tasks/s",
        "e2e.taskstate.postgres.tasks_per_s",
        "e2e.pgqueuer.postgres.tasks_per_s",
    ),
    (
        "ratio.postgres.transitions_over_pgbench",
        "taskstate transitions/s / pgbench single-row tx/s (8 clients)",
        "e2e.taskstate.postgres.transitions_per_s",
        "physical.postgres.pgbench_tx_per_s",
    ),
    (
        "ratio.postgres.transitions_over_asyncpg_single",
        "taskstate transitions/s / asyncpg single-row tx/s (8 connections)",
        "e2e.taskstate.postgres.transitions_per_s",
        "physical.postgres.asyncpg_single_tx_per_s",
    ),
    (
        "ratio.postgres.transitions_over_batched",
        "taskstate transitions/s / asyncpg batched rows/s (64 per tx)",
        "e2e.taskstate.postgres.transitions_per_s",
        "physical.postgres.asyncpg_batched_rows_per_s",
    ),
    (
        "ratio.sqlite.transitions_over_single",
        "taskstate (SQLite) transitions/s / sqlite3 single-row tx/s",
        "e2e.taskstate.sqlite.transitions_per_s",
        "physical.sqlite.single_tx_per_s",
    ),
    (
        "ratio.sqlite.transitions_over_batched",
        "taskstate (SQLite) transitions/s / sqlite3 batched rows/s (64 per tx)",
        "e2e.taskstate.sqlite.transitions_per_s",
        "physical.sqlite.batched_rows_per_s",
    ),
    (
        "ratio.postgres.pickup_p50_over_procrastinate",
        "pickup latency p50, taskstate (PostgreSQL) / Procrastinate",
        "pickup.taskstate.postgres.p50_ms",
        "pickup.procrastinate.postgres.p50_ms",
    ),
    (
        "ratio.postgres.pickup_p99_over_procrastinate",
        "pickup latency p99, taskstate (PostgreSQL) / Procrastinate",
        "pickup.taskstate.postgres.p99_ms",
        "pickup.procrastinate.postgres.p99_ms",
    ),
    (
        "ratio.postgres.scaleout_2_over_1",
        "2 instances / 1 instance, tasks/s",
        "scaleout.postgres.2.tasks_per_s",
        "e2e.taskstate.postgres.tasks_per_s",
    ),
    (
        "ratio.postgres.scaleout_3_over_1",
        "3 instances / 1 instance, tasks/s",
        "scaleout.postgres.3.tasks_per_s",
        "e2e.taskstate.postgres.tasks_per_s",
    ),
]

#: The issue's targets: metric or ratio key → (">=" or "<=", value).
TARGETS: dict[str, tuple[str, float]] = {
    "ratio.postgres.taskstate_over_procrastinate": (">=", 3),
    "ratio.sqlite.taskstate_over_procrastinate": (">=", 2),
    "ratio.postgres.taskstate_over_pgqueuer": (">=", 1),
    "ratio.postgres.transitions_over_pgbench": (">=", 1),
    "ratio.postgres.pickup_p50_over_procrastinate": ("<=", 1),
    "ratio.postgres.pickup_p99_over_procrastinate": ("<=", 1),
    "ws_latency.postgres.1.p99_ms": ("<=", 10),
    "ws_latency.sqlite.1.p99_ms": ("<=", 10),
    "ws_latency.postgres.1000.p99_ms": ("<=", 50),
    "ws_latency.sqlite.1000.p99_ms": ("<=", 50),
    "ws_latency.postgres.1000.lean.p99_ms": ("<=", 50),
    "ws_latency.sqlite.1000.lean.p99_ms": ("<=", 50),
    # The issue's load generator is wrk (C); the Python clients' row is reported beside it.
    "api.postgres.get_task_wrk.p99_ms": ("<=", 10),
    "api.sqlite.get_task_wrk.p99_ms": ("<=", 10),
    "history.pg.first_page.p50_ms": ("<=", 20),
    "history.pg.first_page_filtered.p50_ms": ("<=", 20),
    "history.pg.deep_page_filtered.p50_ms": ("<=", 20),
    "history.pg.middle_page.p50_ms": ("<=", 20),
    "memory.postgres.idle_mib": ("<=", 120),
    "memory.sqlite.idle_mib": ("<=", 120),
    "memory.postgres.ws_deflate_kib_per_subscriber": ("<=", 20),
    "memory.sqlite.ws_deflate_kib_per_subscriber": ("<=", 20),
    "memory.postgres.ws_plain_kib_per_subscriber": ("<=", 20),
    "memory.sqlite.ws_plain_kib_per_subscriber": ("<=", 20),
}


def pgqueuer_installed() -> bool:
    return importlib.util.find_spec("pgqueuer") is not None


def compute_ratios(results: Results) -> dict[str, dict[str, Any]]:
    """Per repetition (sample i with sample i), then median, min and max."""
    out = {}
    for key, label, num_key, den_key in RATIOS:
        num, den = results.metrics.get(num_key), results.metrics.get(den_key)
        if num is None or den is None:
            continue
        pairs = [a / b for a, b in zip(num.samples, den.samples, strict=False) if b]
        if not pairs:
            continue
        out[key] = {
            "label": label,
            "unit": "x",
            "median": statistics.median(pairs),
            "min": min(pairs),
            "max": max(pairs),
            "samples": pairs,
            "note": f"{num_key} / {den_key}, per repetition",
        }
    return out


def verdict(key: str, median: float) -> str:
    target = TARGETS.get(key)
    if target is None:
        return ""
    op, value = target
    met = median >= value if op == ">=" else median <= value
    if met:
        return f"{op} {value:g}: met"
    factor = value / median if op == ">=" else median / value
    return f"{op} {value:g}: missed by {factor:.1f}x"


# -- output --------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "—"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    sections: list[tuple[str, Callable[[str], bool]]] = [
        ("End-to-end throughput and the peers", lambda k: k.startswith(("e2e.", "scaleout."))),
        ("Physical limit (same run)", lambda k: k.startswith("physical.")),
        ("Ratios (per repetition)", lambda k: k.startswith("ratio.")),
        ("Transition → WebSocket subscriber", lambda k: k.startswith("ws_latency.")),
        ("Fan-out to idle subscribers", lambda k: k.startswith("fanout.")),
        ("API under concurrent clients", lambda k: k.startswith("api.")),
        ("History at scale (PostgreSQL)", lambda k: k.startswith("history.")),
        ("Insights at scale (PostgreSQL)", lambda k: k.startswith("insights.")),
        ("Pickup latency: send → the job's code starts, steady rate", lambda k: k.startswith("pickup.")),
        ("Claim among blocked tasks (PostgreSQL)", lambda k: k.startswith("claim.")),
        ("Recovery after SIGKILL", lambda k: k.startswith("recovery.")),
        ("Memory", lambda k: k.startswith("memory.")),
    ]
    everything = {**report["metrics"], **report["ratios"]}
    out = []
    for title, wanted in sections:
        keys = [k for k in everything if wanted(k)]
        if not keys:
            continue
        rows = []
        for key in keys:
            m = everything[key]
            rows.append(
                (
                    m["label"],
                    _fmt(m["median"]),
                    _fmt(m["min"]),
                    _fmt(m["max"]),
                    m["unit"],
                    verdict(key, m["median"]),
                )
            )
        widths = [
            max(len(r[i]) for r in [*rows, ("", "median", "min", "max", "unit", "target")]) for i in range(6)
        ]
        out.append(f"\n## {title}")
        header = ("", "median", "min", "max", "unit", "target")
        line = "  ".join(
            h.ljust(widths[i]) if i in (0, 4, 5) else h.rjust(widths[i]) for i, h in enumerate(header)
        )
        out.append(line.rstrip())
        for r in rows:
            out.append(
                "  ".join(
                    c.ljust(widths[i]) if i in (0, 4, 5) else c.rjust(widths[i]) for i, c in enumerate(r)
                ).rstrip()
            )
    if report["skipped"]:
        out.append("\n## Skipped")
        out.extend(f"{name}: {reason}" for name, reason in report["skipped"].items())
    return "\n".join(out)


def source() -> dict[str, Any]:
    """Which taskstate the servers run: the imported package's directory and its git state.

    Servers are subprocesses that import taskstate when they start, so a working tree that
    changes during a run mixes versions; pin one with PYTHONPATH=<a checkout>/src.
    """
    import taskstate

    package = Path(taskstate.__file__).resolve().parent
    info: dict[str, Any] = {"package": str(package)}
    try:
        head = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        info.update(commit=head, dirty=bool(dirty))
    except (OSError, subprocess.CalledProcessError):
        info.update(commit=None, dirty=None)
    return info


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    pg_version = None
    pgbench = shutil.which("pgbench")
    if pgbench:
        pg_version = subprocess.run([pgbench, "--version"], capture_output=True, text=True).stdout.strip()
    from importlib.metadata import version

    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": len(__import__("os").sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "taskstate": version("taskstate"),
        "procrastinate": e2e_mod.procrastinate_version(),
        "pgqueuer": importlib.metadata.version("pgqueuer") if pgqueuer_installed() else None,
        "pgbench": pg_version,
    }


# -- the run -------------------------------------------------------------------------------


async def run(args: argparse.Namespace, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    from bench import claim as claim_mod
    from bench import history as history_mod
    from bench import insights as insights_mod
    from bench import latency, memory, physical, pickup, recovery

    results = Results()
    only = set(args.only)
    backends = list(args.backends)
    has_pg = await pg_available()
    if "postgres" in backends and not has_pg:
        if args.require_pg:
            raise SystemExit("PostgreSQL is required (--require-pg) but does not answer")
        results.skip("postgres", "PostgreSQL does not answer at the admin DSN")
        backends.remove("postgres")
    pg = "postgres" in backends
    procrastinate_ok = e2e_mod.procrastinate_version() is not None
    pgqueuer_ok = pgqueuer_installed()
    if "pgqueuer" in only and not pgqueuer_ok:
        results.skip("pgqueuer", "not installed (pip install -e '.[bench]')")
    if "procrastinate" in only and not procrastinate_ok:
        results.skip("procrastinate", "not installed (pip install -e '.[bench]')")
    load_start = load_average()
    source_start = source()
    started = time.monotonic()
    concurrency = args.concurrency

    # Interleaved per repetition: every comparison's two sides see the same machine.
    interleaved = only & {"e2e", "procrastinate", "pgqueuer", "physical", "scaleout"}
    for rep in range(sizes.repeat if interleaved else 0):
        log(f"repetition {rep + 1} of {sizes.repeat} (load average {load_average():.1f})")
        if "e2e" in only:
            for backend in backends:
                r = await e2e_mod.taskstate_e2e(
                    backend, sizes.n, workdir, concurrency=concurrency, profile_dir=args.profile
                )
                e2e_mod.record(results, f"e2e.taskstate.{backend}", f"taskstate, {backend}", r)
                log(f"taskstate {backend}: {r.tasks_per_s:.0f} tasks/s ({r.seconds:.1f} s)")
        if "pgqueuer" in only and pg and pgqueuer_ok:
            r = await e2e_mod.pgqueuer_e2e(sizes.n, workdir)
            e2e_mod.record(results, "e2e.pgqueuer.postgres", "PgQueuer, postgres", r)
            results.metrics[
                "e2e.pgqueuer.postgres.transitions_per_s"
            ].label = "PgQueuer, postgres: pgqueuer_log rows/s (3 a job)"
            log(f"pgqueuer: {r.tasks_per_s:.0f} jobs/s ({r.seconds:.1f} s)")
        if "procrastinate" in only and pg and procrastinate_ok:
            r = await e2e_mod.procrastinate_e2e(sizes.n, workdir, concurrency=concurrency)
            e2e_mod.record(results, "e2e.procrastinate.postgres", "Procrastinate, postgres", r)
            results.metrics[
                "e2e.procrastinate.postgres.transitions_per_s"
            ].label = "Procrastinate, postgres: procrastinate_events rows/s (3 a job)"
            log(f"procrastinate: {r.tasks_per_s:.0f} jobs/s ({r.seconds:.1f} s)")
        if "physical" in only:
            if pg:
                limits = await physical.pg_limits(workdir, sizes.physical_seconds)
                results.add(
                    "physical.postgres.pgbench_tx_per_s",
                    limits["pgbench"],
                    "tx/s",
                    "pgbench, 1 UPDATE + 1 INSERT per tx, prepared, 8 clients, taskstate schema",
                )
                results.add(
                    "physical.postgres.asyncpg_single_tx_per_s",
                    limits["asyncpg_single"],
                    "tx/s",
                    "asyncpg, 1 UPDATE + 1 INSERT per tx, 8 connections, taskstate schema",
                )
                results.add(
                    "physical.postgres.asyncpg_batched_rows_per_s",
                    limits["asyncpg_batched"],
                    "rows/s",
                    "asyncpg, 64 UPDATE+INSERT pairs per tx, 1 connection, taskstate schema",
                )
                results.add(
                    "physical.postgres.pgbench_minimal_tx_per_s",
                    limits["pgbench_minimal"],
                    "tx/s",
                    "pgbench as above, minimal schema (int key, no secondary index)",
                )
                results.add(
                    "physical.postgres.asyncpg_batched_minimal_rows_per_s",
                    limits["asyncpg_batched_minimal"],
                    "rows/s",
                    "asyncpg batched 64 as above, minimal schema",
                )
                log(
                    f"physical: pgbench {limits['pgbench']:.0f} tx/s, batched {limits['asyncpg_batched']:.0f}"
                )
            if "sqlite" in backends:
                single, batched = await asyncio.to_thread(
                    physical.sqlite_limits, workdir, sizes.physical_seconds / 2
                )
                results.add(
                    "physical.sqlite.single_tx_per_s",
                    single,
                    "tx/s",
                    "sqlite3, 1 UPDATE + 1 INSERT per tx, WAL + synchronous=NORMAL, taskstate schema",
                )
                results.add(
                    "physical.sqlite.batched_rows_per_s",
                    batched,
                    "rows/s",
                    "sqlite3, 64 pairs per tx, WAL + synchronous=NORMAL, taskstate schema",
                )
        if "scaleout" in only and pg and rep < sizes.scaleout_repeat:
            for instances in sizes.scaleout_instances:
                r = await e2e_mod.taskstate_e2e(
                    "postgres", sizes.n, workdir, instances=instances, concurrency=concurrency
                )
                e2e_mod.record(
                    results,
                    f"scaleout.postgres.{instances}",
                    f"taskstate, postgres, {instances} instances",
                    r,
                )
                log(f"scale-out {instances}: {r.tasks_per_s:.0f} tasks/s")

    compression = None if args.ws_compression == "none" else "deflate"
    if "ws_latency" in only:
        for backend in backends:
            await latency.ws_latency(
                results,
                backend,
                workdir,
                counts=sizes.ws_counts,
                probes=sizes.ws_probes,
                repeat=sizes.repeat,
                compression=compression,
                lean=args.ws_client == "lean",
            )
    if "fanout" in only:
        backend = "postgres" if pg else backends[0]
        await latency.fanout(
            results,
            backend,
            workdir,
            k=sizes.fanout_k,
            probes=sizes.fanout_probes,
            compression=compression,
            lean=args.ws_client == "lean",
        )
    if "api_latency" in only:
        for backend in backends:
            await latency.api_latency(
                results,
                backend,
                workdir,
                seeded=sizes.api_seeded,
                active=sizes.api_active,
                clients=sizes.api_clients,
                requests=sizes.api_requests,
                repeat=sizes.repeat,
            )
    if "history" in only:
        if pg:
            await history_mod.history(
                results,
                workdir,
                total=args.history_rows or sizes.history_rows,
                samples=sizes.history_samples,
                deep_pages=sizes.history_deep_pages,
            )
        else:
            results.skip("history", "PostgreSQL only")
    if "insights" in only:
        if pg:
            await insights_mod.insights(
                results, workdir, total=sizes.insights_rows, samples=sizes.insights_samples
            )
        else:
            results.skip("insights", "PostgreSQL only")
    if "claim" in only:
        if pg:
            await claim_mod.claim(results, workdir, blocked=sizes.claim_blocked, rounds=sizes.claim_rounds)
        else:
            results.skip("claim", "PostgreSQL only")
    if "pickup" in only:
        n = max(20, int(sizes.pickup_rate * sizes.pickup_seconds))
        for rep in range(sizes.repeat):
            log(f"pickup: {n} tasks at {sizes.pickup_rate:g}/s, repetition {rep + 1} of {sizes.repeat}")
            for backend in backends:
                await pickup.taskstate_pickup(results, workdir, backend, rate=sizes.pickup_rate, n=n)
            if pg and procrastinate_ok:
                await pickup.procrastinate_pickup(results, workdir, rate=sizes.pickup_rate, n=n)
    if "recovery" in only:
        for _ in range(sizes.repeat):
            for backend in backends:
                await recovery.recovery(results, backend, workdir)
    if "memory" in only:
        for _ in range(sizes.repeat):
            for backend in backends:
                await memory.memory(
                    results,
                    backend,
                    workdir,
                    queued=sizes.memory_queued,
                    subscribers=sizes.memory_subscribers,
                )

    report = results.to_json()
    report["ratios"] = compute_ratios(results)
    report["targets"] = {
        k: verdict(k, v["median"])
        for k, v in {**report["metrics"], **report["ratios"]}.items()
        if k in TARGETS
    }
    report["meta"] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "seconds": round(time.monotonic() - started, 1),
        "source_start": source_start,
        "source_end": source(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sizes": sizes.__dict__,
        "server": {
            "MAX_CONCURRENT_TASKS": concurrency,
            "procrastinate_worker_concurrency": concurrency,
            "recovery_env": recovery.ENV,
            "ws_compression": args.ws_compression,
            "log_level": "warning",
        },
    }
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: N=200, 1 repetition, small sizes")
    parser.add_argument("--n", type=int, help="no-op tasks per end-to-end run (default 5000)")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3)")
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=SCENARIOS,
        help=f"comma-separated scenarios: {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--backends",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=BACKENDS,
        help="comma-separated: sqlite,postgres",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    parser.add_argument("--concurrency", type=int, default=e2e_mod.CONCURRENCY, help="MAX_CONCURRENT_TASKS")
    parser.add_argument(
        "--ws-counts",
        type=lambda s: tuple(int(x) for x in s.split(",") if x.strip()),
        help="subscriber counts of the WebSocket latency rows (default 1,100,1000)",
    )
    parser.add_argument("--scaleout-repeat", type=int, help="repetitions with the scale-out rows (default 1)")
    parser.add_argument("--history-rows", type=int, help="tasks seeded for the history scenario")
    parser.add_argument(
        "--ws-compression",
        choices=["deflate", "none"],
        default="deflate",
        help="whether subscribers offer permessage-deflate (browsers do)",
    )
    parser.add_argument(
        "--ws-client",
        choices=["websockets", "lean"],
        default="websockets",
        help="the latency and fan-out rows' subscribers: the websockets library, or bare-protocol"
        " clients that spend less of the shared cores per frame (bench/ws_client.py; no compression)",
    )
    parser.add_argument(
        "--profile", type=Path, help="run the e2e servers under py-spy, raw stacks into this directory"
    )
    parser.add_argument("--require-pg", action="store_true", help="fail rather than skip without PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, logs)")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    bad = set(args.backends) - set(BACKENDS)
    if bad:
        parser.error(f"unknown backends: {sorted(bad)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.n:
        sizes.n = args.n
    if args.repeat:
        sizes.repeat = args.repeat
    if args.scaleout_repeat:
        sizes.scaleout_repeat = args.scaleout_repeat
    if args.ws_counts:
        sizes.ws_counts = args.ws_counts
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # thousands of WebSockets, on both ends (servers inherit it)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="taskstate-bench-"))
    log(f"work directory {workdir}")
    try:
        report = asyncio.run(run(args, sizes, workdir))
    except BaseException:
        log(f"failed; the servers' logs are in {workdir}")
        raise
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    dump_json(args.json, report)
    m = report["meta"]
    print(
        f"# taskstate benchmark, {m['date']}: {m['machine']['cpu']}, {m['machine']['cores']} cores, "
        f"{m['machine']['memory_gib']} GiB, Python {m['machine']['python']}; "
        f"N={sizes.n}, {sizes.repeat} repetition(s); load average {m['load_average_start']:.1f} → "
        f"{m['load_average_end']:.1f}; {m['seconds']:.0f} s"
    )
    if m["source_start"] != m["source_end"]:
        print(
            f"WARNING: taskstate changed during the run ({m['source_start']} -> {m['source_end']}): "
            "the figures mix versions"
        )
    else:
        print(f"taskstate: {m['source_start']}")
    print(table(report))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
