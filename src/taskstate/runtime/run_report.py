"""What a job tells the world besides its transitions: its live progress and log events,
and the run report written with its final transition (`execution_summary`, `phase_results`,
`system_info`): built from the job's context, apart from the lifecycle that sends them."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from taskstate.core.bus import Event
from taskstate.core.db import iso, utcnow
from taskstate.runtime.context import JobContext
from taskstate.runtime.output import LogLine


def progress_event(task_id: str, ctx: JobContext) -> Event:
    return Event.of(
        {
            "type": "progress",
            "task_id": task_id,
            "progress": ctx.progress_value,
            "phase": ctx.phase,
            "message": ctx.message,
            "items_processed": ctx.items_processed,
            "items_failed": ctx.items_failed,
            "waiting_for": ctx.waiting_for,
        }
    )


def log_event(task_id: str, line: LogLine) -> Event:
    return Event.of(
        {
            "type": "log",
            "task_id": task_id,
            "seq": line.seq,
            "at": iso(line.at),
            "level": line.level,
            "message": line.message,
        }
    )


def run_report(
    ctx: JobContext,
    row: Mapping[str, Any],
    entered: list[tuple[str, datetime]],
    log_lines: int,
    system_info: dict[str, Any],
) -> dict[str, Any]:
    """The fields a final transition writes: where the job got to, and how long this
    attempt spent in each state it `entered` (state, since when)."""
    now = utcnow()
    phases: dict[str, float] = {}
    marks = [*entered, ("end", now)]
    for (state, at), (_, until) in itertools.pairwise(marks):
        phases[state] = round(phases.get(state, 0.0) + (until - at).total_seconds(), 6)
    first = row["started_at"] or entered[0][1]
    return {
        "phase": ctx.phase,
        "message": ctx.message,
        "items_processed": ctx.items_processed,
        "items_failed": ctx.items_failed,
        "execution_summary": {
            "duration_seconds": round((now - first).total_seconds(), 6),
            "attempts": row["attempt"],
            "restorations": row["restoration_count"],
            "items_processed": ctx.items_processed,
            "items_failed": ctx.items_failed,
            "log_lines": log_lines,
        },
        "phase_results": phases,
        "system_info": system_info,
    }
