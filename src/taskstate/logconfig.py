"""Process logging: JSON lines for machines (the default), plain text for people.

Every JSON line carries the worker id of this instance and, when the record
was emitted while a job ran, the task id: a log aggregator can follow one
task across restarts and instances.

No line carries a secret: uvicorn logs every request's path with its query
string, and a WebSocket may authenticate with `?token=`; the formatters
redact tokens, whatever logger emitted them (see `redact`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from taskstate.runtime.context import current_context

#: Set once the supervisor knows who it is.
worker_id: str | None = None

REDACTED = "[redacted]"
#: An API token (auth.TOKEN) anywhere: its id, which is no secret, stays to tell which it was.
_API_TOKEN = re.compile(r"\bts_([0-9a-f]{12})_[A-Za-z0-9_-]+")
_API_TOKEN_REDACTED = r"ts_[0-9a-f]{12}_\[redacted\]"
#: A `token=` query parameter, whatever its value (a mistyped token is a secret too).
_QUERY_TOKEN = re.compile(rf"(?i)(\btoken=)(?!{_API_TOKEN_REDACTED})[^&\s\"'\\#]*")
#: The credentials of an `Authorization: Bearer …` header, should anything print one.
_BEARER = re.compile(rf"(?i)(\bbearer\s+)(?!{_API_TOKEN_REDACTED})[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    """`text` without API tokens, `token=` query values or bearer credentials."""
    lowered = text.lower()
    if "ts_" not in text and "token" not in lowered and "bearer" not in lowered:
        return text
    text = _API_TOKEN.sub(rf"ts_\1_{REDACTED}", text)
    text = _QUERY_TOKEN.sub(rf"\1{REDACTED}", text)
    return _BEARER.sub(rf"\1{REDACTED}", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "worker_id": worker_id,
        }
        ctx = current_context.get()
        line["task_id"] = ctx.task_id if ctx is not None else getattr(record, "task_id", None)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(task)s")

    def format(self, record: logging.LogRecord) -> str:
        ctx = current_context.get()
        record.task = f" [task {ctx.task_id}]" if ctx is not None else ""
        return redact(super().format(record))


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
