"""Prometheus metrics (`GET /metrics`), names prefixed `taskstate_`.

Counters and histograms are fed as things happen on this instance (so that
sums across instances are right); gauges of the database's contents (tasks
by state, queue depth and age, stuck tasks, workers) are read at scrape time
with a few bounded queries, so every instance reports the same values for
them. Each app has its own registry, so that several apps in one process do
not collide.

The `_created` series prometheus_client adds beside each counter and
histogram (the time each series was first seen) are turned off: nothing
reads them, and they doubled the exposition's size.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import prometheus_client
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskstate.core.db import Database, tasks, utcnow, workers
from taskstate.core.states import State, is_terminal
from taskstate.core.sweep import count_stuck
from taskstate.core.writer import TransitionRecord

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks = Gauge("taskstate_tasks", "Tasks in the database, by state.", ["state"], registry=r)
        self.transitions = Counter(
            "taskstate_transitions",
            "Transitions committed by this instance.",
            ["from_state", "to_state"],
            registry=r,
        )
        self.task_duration = Histogram(
            "taskstate_task_duration_seconds",
            "From the first claim to the final state, of tasks finished by this instance.",
            ["type", "state"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("taskstate_queue_depth", "Queued tasks that are due.", registry=r)
        self.queue_oldest = Gauge(
            "taskstate_queue_oldest_age_seconds", "Age of the oldest due queued task.", registry=r
        )
        self.stuck = Gauge(
            "taskstate_stuck_tasks",
            "Tasks in preparing, running or collecting with no sign of life for longer than their timeout.",
            registry=r,
        )
        self.workers = Gauge(
            "taskstate_workers",
            "Instances known to the database, by state: running (heartbeat fresh), lost (heartbeat "
            "older than the orphan timeout), stopped (shut down cleanly).",
            ["state"],
            registry=r,
        )
        self.job_slots = Gauge(
            "taskstate_job_slots", "Jobs this instance may run at once (MAX_CONCURRENT_TASKS).", registry=r
        )
        self.http_latency = Histogram(
            "taskstate_http_request_duration_seconds",
            "HTTP requests answered by this instance, by route template, method and status.",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.subscribers = Gauge(
            "taskstate_websocket_subscribers", "Open WebSocket subscriptions.", registry=r
        )
        self.running_jobs = Gauge("taskstate_running_jobs", "Jobs this instance runs now.", registry=r)
        self.sweeper = Counter(
            "taskstate_sweeper_actions",
            "Transitions made by this instance's sweeper.",
            ["to_state"],
            registry=r,
        )
        for to_state in (State.ORPHANED, State.QUEUED, State.FAILED):  # at 0 from the start, for rate()
            self.sweeper.labels(to_state.value)
        self.db_latency = Histogram(
            "taskstate_db_transaction_seconds",
            "Duration of the writer's transactions (a batch of writes, commit included).",
            buckets=DB_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "taskstate_writer_batch_ops",
            "Writes committed together in one transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )

    def observe_commit(self, records: list[TransitionRecord]) -> None:
        for rec in records:
            self.transitions.labels(rec.from_state or "none", rec.to_state).inc()
            if is_terminal(rec.to_state) and rec.task:
                duration = rec.task.get("duration_seconds")
                if isinstance(duration, int | float):
                    self.task_duration.labels(rec.task.get("type", "?"), rec.to_state).observe(duration)
            if rec.actor == "sweeper":
                self.sweeper.labels(rec.to_state).inc()

    def observe_batch(self, ops: int, seconds: float) -> None:
        self.db_latency.observe(seconds)
        self.batch_size.observe(ops)

    async def refresh(
        self,
        db: Database,
        *,
        subscribers: int,
        running_jobs: int,
        job_slots: int,
        default_timeout: float,
        orphan_after: float,
    ) -> None:
        """Read the gauges that describe the database."""
        now = utcnow()
        async with db.reader.connect() as conn:
            counts: dict[str, int] = dict(
                (await conn.execute(sa.select(tasks.c.state, sa.func.count()).group_by(tasks.c.state))).all()
            )
            depth, oldest = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.min(tasks.c.run_at)).where(
                        tasks.c.state == State.QUEUED.value, tasks.c.run_at <= now
                    )
                )
            ).one()
            # A row per instance, forgotten a day after it was lost: a small table.
            beats = (
                await conn.execute(sa.select(workers.c.state, workers.c.heartbeat_at).limit(10_000))
            ).all()
        stuck = await count_stuck(db, default_timeout)
        by_state = {"running": 0, "lost": 0, "stopped": 0}
        stale = now - timedelta(seconds=orphan_after)
        for state, beat in beats:
            if state == "running" and beat < stale:
                state = "lost"
            by_state[state] = by_state.get(state, 0) + 1
        for name, count in by_state.items():
            self.workers.labels(name).set(count)
        self.stuck.set(stuck)
        self.job_slots.set(job_slots)
        for state in State:
            self.tasks.labels(state.value).set(counts.get(state.value, 0))
        self.queue_depth.set(depth)
        self.queue_oldest.set(_age(oldest, now))
        self.subscribers.set(subscribers)
        self.running_jobs.set(running_jobs)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpMetricsMiddleware:
    """Times each HTTP request, labelled by its route's template (`/api/v2/tasks/{task_id}`),
    never its path, so that the series stay few whatever the ids; a path no route matched
    is `unmatched`. WebSockets are not requests: they are counted by subscribers."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.http_latency.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:
        return "unmatched"
    path = str(getattr(route, "path", ""))
    if isinstance(route, Mount):
        return path + "/{path}"
    return path or "unmatched"


def _age(oldest: datetime | None, now: datetime) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite through an aggregate: no type processing
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest).total_seconds())
