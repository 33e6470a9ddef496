"""How the client commands show tasks and workers to a person: times, bars, tables.

Pure functions of the API's JSON (they never fail on a missing or odd field: a
value the server did not send shows as `-` or as itself), so that a newer server
with fields this client does not know still reads well.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

PROGRESS_BAR_WIDTH = 30


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def local_datetime(value: Any) -> str:
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def local_time_of_day(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return time.strftime("%H:%M:%S")


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_bar(progress: Any, *, width: int = PROGRESS_BAR_WIDTH, percent: bool = True) -> str:
    value = float(progress) if isinstance(progress, int | float) else 0.0
    value = min(100.0, max(0.0, value))
    filled = round(width * value / 100)
    bar = f"[{'#' * filled}{'.' * (width - filled)}]"
    return f"{bar} {value:5.1f}%" if percent else bar


def progress_text(report: Mapping[str, Any]) -> str:
    """The bar, then the message if there is one: of a task, or of a progress event."""
    text = progress_bar(report.get("progress"))
    return f"{text}  {report['message']}" if report.get("message") else text


def question_text(question: Mapping[str, Any]) -> str:
    choices = question.get("choices")
    suffix = f"  [{' / '.join(map(str, choices))}]" if choices else ""
    return f"{question.get('id')}: {question.get('question')}{suffix}"


def clip(text: Any, width: int) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= width else value[: width - 1] + "…"


def json_excerpt(value: Any, width: int) -> str:
    return clip(json.dumps(value, sort_keys=True), width)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [list(headers), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(), file=out)


def print_task(task: Mapping[str, Any], out: TextIO) -> None:
    """`taskstate status`: one task, a field a line."""
    state = str(task.get("state"))
    if task.get("reason"):
        state += f"  ({task['reason']})"
    lines: list[tuple[str, Any]] = [
        ("id", task.get("id")),
        ("type", task.get("type")),
        ("name", task.get("name")),
        ("state", state),
        ("progress", progress_text(task)),
        ("created", local_datetime(task.get("created_at"))),
        ("started", local_datetime(task.get("started_at"))),
        ("finished", local_datetime(task.get("finished_at"))),
        ("duration", duration(task.get("duration_seconds"))),
        ("attempt", f"{task.get('attempt')} of {task.get('max_attempts')}"),
        ("worker", task.get("worker_id") or "-"),
    ]
    if task.get("params"):
        lines.append(("params", json.dumps(task["params"], sort_keys=True)))
    if task.get("endpoint"):
        lines.append(("endpoint", task["endpoint"]))
    if task.get("error"):
        error = task["error"]
        if task.get("error_type"):
            error = f"{task['error_type']}: {error}"
        lines.append(("error", error))
    if task.get("result") is not None:
        lines.append(("result", json_excerpt(task["result"], 500)))
    if task.get("retry_of"):
        lines.append(("retry of", task["retry_of"]))
    for label, value in lines:
        print(f"{label:<10}{value}", file=out)
    for question in task.get("pending_questions") or []:
        print(f"question  {question_text(question)}", file=out)
