"""A smoke run of the benchmark suite (`python -m bench --quick`), to keep it working.

It checks the shape of the report and that every figure is a positive number, never a
timing threshold: the figures depend on the machine and its load.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO


def test_bench_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--only",
        "e2e,ws_latency,pickup",
        "--ws-counts",
        "1",
        "--ws-client",
        "lean",
        "--json",
        str(out),
    ]
    if os.environ.get("TASKSTATE_REQUIRE_PG") == "1":
        command.append("--require-pg")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    assert "End-to-end throughput" in done.stdout
    assert "Pickup latency" in done.stdout

    report = json.loads(out.read_text())
    assert {"meta", "metrics", "ratios", "skipped", "targets"} <= set(report)
    assert report["meta"]["sizes"]["n"] == 200
    assert report["meta"]["sizes"]["repeat"] == 1
    backends = ["sqlite"] + ([] if "postgres" in report["skipped"] else ["postgres"])
    expected = []
    for backend in backends:
        expected += [
            f"e2e.taskstate.{backend}.tasks_per_s",
            f"e2e.taskstate.{backend}.transitions_per_s",
            f"e2e.taskstate.{backend}.seconds",
            f"e2e.taskstate.{backend}.worker_cpu_ms_per_task",
            f"ws_latency.{backend}.1.lean.p50_ms",
            f"ws_latency.{backend}.1.lean.p99_ms",
            f"pickup.taskstate.{backend}.p50_ms",
            f"pickup.taskstate.{backend}.p99_ms",
        ]
    metrics = report["metrics"]
    missing = [k for k in expected if k not in metrics]
    assert not missing, f"missing metrics: {missing}; got {sorted(metrics)}"
    for key in expected:
        m = metrics[key]
        assert {"label", "unit", "median", "min", "max", "samples"} <= set(m), key
        assert len(m["samples"]) == 1, key
        for value in (m["median"], m["min"], m["max"]):
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, m)
    # 5 durable transitions per no-op task, timed over the same interval.
    for backend in backends:
        tasks = metrics[f"e2e.taskstate.{backend}.tasks_per_s"]["median"]
        transitions = metrics[f"e2e.taskstate.{backend}.transitions_per_s"]["median"]
        assert math.isclose(transitions, 5 * tasks, rel_tol=1e-9)
