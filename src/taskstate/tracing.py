"""OpenTelemetry tracing of job runs: a span per run, when `TASKSTATE_TRACING=1`.

The spans of HTTP requests are FastAPI's own (app.py's `telemetry`), which also sets up the
SDK's tracer provider, exporting by OTLP over HTTP from the standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...), unless the process has one
already (an app that embeds taskstate, `opentelemetry-instrument`): then that one is used.
The SDK and the exporter are the `tracing` extra. While tracing is off, this module is not
imported, and neither FastAPI nor the runner makes a span.

A job's span is a root span: a job runs long after the request that created it, often on
another instance, so it is not that request's child. Both carry `taskstate.task.id`, by
which a tracing backend finds one from the other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from taskstate import __version__
from taskstate.core.states import State, is_terminal

if TYPE_CHECKING:
    from taskstate.runtime.runner import RunningJob

TASK_ID = "taskstate.task.id"
TASK_TYPE = "taskstate.task.type"
TASK_ATTEMPT = "taskstate.task.attempt"
TASK_OUTCOME = "taskstate.task.outcome"
WORKER_ID = "taskstate.worker.id"


def tracer() -> trace.Tracer:
    return trace.get_tracer("taskstate", __version__)


def warn_without_provider() -> None:
    """Tracing on with nowhere to send spans is a mistake worth a line in the log."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        logging.getLogger(__name__).warning(
            "TASKSTATE_TRACING=1 but no tracer provider: set OTEL_EXPORTER_OTLP_ENDPOINT "
            "(and install the tracing extra), or set one up before the app starts"
        )


class JobSpan:
    """The span of one job run, told how the run ended."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def ended(self, outcome: str, error_type: str | None = None, error: str | None = None) -> None:
        self.span.set_attribute(TASK_OUTCOME, outcome)
        if error_type is not None:
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(Status(StatusCode.ERROR, error))


@contextmanager
def job_span(task_id: str, task_type: str, attempt: int, worker_id: str) -> Iterator[JobSpan]:
    """A root span around one run of a task's job (an empty context: no parent)."""
    attributes: dict[str, str | int] = {
        TASK_ID: task_id,
        TASK_TYPE: task_type,
        TASK_ATTEMPT: attempt,
        WORKER_ID: worker_id,
    }
    with tracer().start_as_current_span(
        f"run {task_type}", context=Context(), kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield JobSpan(span)


async def run_outcome(job: RunningJob) -> tuple[str, str | None, str | None]:
    """How a run ended, for its span: the state it left its task in, or, where the task
    was ended by someone else (cancelled, reset, failed by the sweeper), the task's state
    now; with the error of a failure."""
    state = job.state.value
    error_type, error = job.failure or (None, None)
    if job.stop_reason == "lost":
        return "lost", None, None
    if not is_terminal(job.state) and job.state is not State.QUEUED:
        row = await job.env.store.reads.get_task_row(job.task_id)
        state = row["state"] if row is not None else "deleted"
        if row is not None and error_type is None:
            error_type, error = row.get("error_type"), row.get("error")
    return (state, error_type, error) if state == State.FAILED.value else (state, None, None)
