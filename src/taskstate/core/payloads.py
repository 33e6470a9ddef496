"""Tasks and transitions as the contract writes them (CONTRACT §2 and §3).

One rendering of a task row, shared by the HTTP answers, the events and the
replay, so that a task looks the same whichever way a client reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from taskstate.core.bus import Event
from taskstate.core.db import iso_or_none, utcnow
from taskstate.core.states import is_terminal
from taskstate.core.writer import TransitionRecord


def task_payload(row: Mapping[Any, Any], now: datetime | None = None) -> dict[str, Any]:
    """A task row as the contract's JSON object (the shape of `TaskPublic`)."""
    started, finished = row["started_at"], row["finished_at"]
    if started is not None and finished is not None:
        duration: float | None = (finished - started).total_seconds()
    elif started is not None and not is_terminal(row["state"]):
        duration = ((now or utcnow()) - started).total_seconds()
    else:
        duration = None
    return {
        "id": row["id"],
        "type": row["type"],
        "name": row["name"],
        "state": row["state"],
        "is_terminal": is_terminal(row["state"]),
        "progress": row["progress"],
        "phase": row["phase"],
        "message": row["message"],
        "items_processed": row["items_processed"],
        "items_failed": row["items_failed"],
        "params": row["params"],
        "result": row["result"],
        "error": row["error"],
        "error_type": row["error_type"],
        "reason": row["last_reason"],
        "priority": row["priority"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "trigger": row["trigger"],
        "trigger_source": row["trigger_source"],
        "idempotency_key": row["idempotency_key"],
        "run_at": iso_or_none(row["run_at"]),
        "timeout_seconds": row["timeout_seconds"],
        "created_at": iso_or_none(row["created_at"]),
        "updated_at": iso_or_none(row["updated_at"]),
        "started_at": iso_or_none(started),
        "finished_at": iso_or_none(finished),
        "duration_seconds": duration,
        "worker_id": row["worker_id"],
        "heartbeat_at": iso_or_none(row["heartbeat_at"]),
        "has_checkpoint": row["checkpoint"] is not None,
        "restoration_count": row["restoration_count"],
        "last_restored_at": iso_or_none(row["last_restored_at"]),
        "restoration_source": row["restoration_source"],
        "restoration_decision": row["restoration_decision"],
        "restoration_code": (row["restoration_decision"] or "").partition(":")[0] or None,
        "pending_questions": row["pending_questions"] or [],
        "waiting_for_input": bool(row["pending_questions"]),
        "retry_of": row["retry_of"],
        "endpoint": row["endpoint"],
        "service_info": row["service_info"],
        "log_lines": row["log_seq"],
        "execution_summary": row["execution_summary"],
        "phase_results": row["phase_results"],
        "system_info": row["system_info"],
        "owner": row["owner"],
        "parent_id": row["parent_id"],
        "root_id": row["root_id"] or row["id"],
        "depends_on": row["depends_on"] or [],
        "waiting_for": row["waiting_for"] or [],
        "requires_approval": row["requires_approval"],
        "blocked": row["state"] == "queued" and row["blockers"] > 0,
    }


def task_detail_payload(row: Mapping[Any, Any], now: datetime | None = None) -> dict[str, Any]:
    """One task read by itself (`GET /tasks/{id}`): `task_payload` and its `traceback`.

    The traceback (up to 16 KiB) is left out of lists and events, where a page of failed
    tasks would carry a megabyte of text nobody looks at; it is read where it is shown.
    """
    return {**task_payload(row, now), "traceback": row["traceback"]}


def transition_event(rec: TransitionRecord) -> Event:
    return Event.of(
        {
            "type": "transition",
            "seq": rec.seq,
            "task_id": rec.task_id,
            "from": rec.from_state,
            "to": rec.to_state,
            "at": iso_or_none(rec.at),
            "reason": rec.reason,
            "actor": rec.actor,
            "task": rec.task,
        }
    )


def transition_row_payload(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "task_id": row["task_id"],
        "from_state": row["from_state"],
        "to_state": row["to_state"],
        "at": iso_or_none(row["at"]),
        "reason": row["reason"],
        "actor": row["actor"],
    }
