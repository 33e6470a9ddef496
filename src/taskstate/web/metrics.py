"""Prometheus metrics (`GET /metrics`), names prefixed `taskstate_`.

Counters and histograms are fed as things happen on this instance (so that
sums across instances are right); gauges of the database's contents (tasks
by state, queue depth and age) are read at scrape time. Each app has its
own registry, so that several apps in one process do not collide.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from taskstate.core.db import tasks, utcnow
from taskstate.core.states import State, is_terminal
from taskstate.core.writer import TransitionRecord

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
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

    async def refresh(self, reader: Any, *, subscribers: int, running_jobs: int) -> None:
        """Read the gauges that describe the database."""
        now = utcnow()
        async with reader.connect() as conn:
            counts = dict(
                (await conn.execute(sa.select(tasks.c.state, sa.func.count()).group_by(tasks.c.state))).all()
            )
            depth, oldest = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.min(tasks.c.run_at)).where(
                        tasks.c.state == State.QUEUED.value, tasks.c.run_at <= now
                    )
                )
            ).one()
        for state in State:
            self.tasks.labels(state.value).set(counts.get(state.value, 0))
        self.queue_depth.set(depth)
        self.queue_oldest.set(_age(oldest, now))
        self.subscribers.set(subscribers)
        self.running_jobs.set(running_jobs)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _age(oldest: datetime | None, now: datetime) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite through an aggregate: no type processing
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest).total_seconds())
