"""Process logging: JSON lines for machines (the default), plain text for people.

Every JSON line carries the worker id of this instance and, when the record
was emitted while a job ran, the task id: a log aggregator can follow one
task across restarts and instances.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from taskstate.jobs import current_context

#: Set once the supervisor knows who it is.
worker_id: str | None = None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "worker_id": worker_id,
        }
        ctx = current_context.get()
        line["task_id"] = ctx.task_id if ctx is not None else getattr(record, "task_id", None)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(task)s")

    def format(self, record: logging.LogRecord) -> str:
        ctx = current_context.get()
        record.task = f" [task {ctx.task_id}]" if ctx is not None else ""
        return super().format(record)


def configure(log_format: str, level: str) -> None:
    """Send every logger (uvicorn's included) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
