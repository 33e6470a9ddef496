"""Tables and engines.

Tables are SQLAlchemy Core: the hot paths build statements, never ORM objects.
SQLite gets two engines: one writer connection whose transactions start with
`BEGIN IMMEDIATE` (so a read-then-write never dead-locks on the lock upgrade)
and a pool of readers whose transactions are plain `BEGIN` (a consistent WAL
snapshot). PostgreSQL uses one pooled engine for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskstate.core.states import TERMINAL_STATES, State


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigIntKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

_terminal = sorted(s.value for s in TERMINAL_STATES)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("phase", sa.String(200)),
    sa.Column("message", sa.Text),
    sa.Column("items_processed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("items_failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("result", JSONType),
    sa.Column("error", sa.Text),
    sa.Column("error_type", sa.String(200)),
    sa.Column("traceback", sa.Text),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("trigger_source", sa.String(200)),
    # Unique per owner where set (0006): `ix_tasks_owner_idempotency`.
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("run_at", UTCDateTime, nullable=False),
    sa.Column("timeout_seconds", sa.Float),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("heartbeat_at", UTCDateTime),
    sa.Column("checkpoint", sa.Text),  # JSON text: parsed (and validated) on restore
    sa.Column("checkpoint_at", UTCDateTime),
    sa.Column("restoration_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_restored_at", UTCDateTime),
    sa.Column("restoration_source", sa.String(32)),
    sa.Column("restoration_decision", sa.Text),
    sa.Column("restore_pending", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("retry_of", sa.String(36)),
    sa.Column("last_reason", sa.Text),
    # 0002: service jobs, questions, logs, the run report
    sa.Column("endpoint", sa.Text),
    sa.Column("service_info", JSONType),
    sa.Column("pending_questions", JSONType),
    sa.Column("log_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("execution_summary", JSONType),
    sa.Column("phase_results", JSONType),
    sa.Column("system_info", JSONType),
    # 0003: who created the task (the token's name), when auth is on
    sa.Column("owner", sa.String(200)),
    # 0007: workflows. A spawned task's parent and the top of its tree (its own id when it
    # has no parent); how many things a queued task still waits for (unfinished
    # dependencies, a pending approval): only tasks with none are claimed.
    sa.Column("parent_id", sa.String(36)),
    sa.Column("root_id", sa.String(36)),
    sa.Column("blockers", sa.Integer, nullable=False, server_default="0"),
    sa.Column("depends_on", JSONType),
    sa.Column("waiting_for", JSONType),
    sa.Column("requires_approval", sa.Boolean, nullable=False, server_default=sa.false()),
    # Whether a task's end concerns others (its end looks for them only then).
    sa.Column("has_children", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("has_dependents", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index(
        "ix_tasks_owner_created",
        "owner",
        sa.text("created_at DESC"),
        sa.text("id DESC"),
        postgresql_where=sa.text("owner IS NOT NULL"),
        sqlite_where=sa.text("owner IS NOT NULL"),
    ),
    # NULL owners (auth off) count as one owner; the key leads so that a lookup by key uses it.
    sa.Index(
        "ix_tasks_owner_idempotency",
        "idempotency_key",
        sa.text("coalesce(owner, '')"),
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    sa.Index(
        "ix_tasks_queue",
        sa.text("priority DESC"),
        "created_at",
        postgresql_where=sa.text("state = 'queued' AND blockers = 0"),
        sqlite_where=sa.text("state = 'queued' AND blockers = 0"),
    ),
    sa.Index(
        "ix_tasks_parent",
        "parent_id",
        postgresql_where=sa.text("parent_id IS NOT NULL"),
        sqlite_where=sa.text("parent_id IS NOT NULL"),
    ),
    sa.Index("ix_tasks_root", "root_id", sa.text("created_at DESC"), sa.text("id DESC")),
    sa.Index(
        "ix_tasks_active",
        "created_at",
        postgresql_where=sa.text(f"state NOT IN ({', '.join(repr(s) for s in _terminal)})"),
        sqlite_where=sa.text(f"state NOT IN ({', '.join(repr(s) for s in _terminal)})"),
    ),
    sa.Index("ix_tasks_history", sa.text("created_at DESC"), sa.text("id DESC")),
    sa.Index("ix_tasks_state_created", "state", sa.text("created_at DESC"), sa.text("id DESC")),
    sa.Index("ix_tasks_type_created", "type", sa.text("created_at DESC"), sa.text("id DESC")),
    # 0010: covers what the insights read of a finished task (index-only scans).
    sa.Index(
        "ix_tasks_finished",
        "finished_at",
        "type",
        "state",
        "started_at",
        "created_at",
        "owner",
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    ),
)

transitions = sa.Table(
    "transitions",
    metadata,
    # Allocated by the store from `seq_counter`, never by the database: see store.py.
    sa.Column("seq", BigIntKey, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.String(36), nullable=False),
    sa.Column("from_state", sa.String(16)),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Index("ix_transitions_task", "task_id", "seq"),
)

seq_counter = sa.Table(
    "seq_counter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.BigInteger, nullable=False),
)

questions = sa.Table(
    "questions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("task_id", sa.String(36), nullable=False),
    # Which ask() of the job this is: given by the job, or "q<n>" for its n-th question.
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("choices", JSONType),
    sa.Column("context", JSONType),
    sa.Column("asked_at", UTCDateTime, nullable=False),
    sa.Column("timeout_at", UTCDateTime),
    sa.Column("default_answer", JSONType),
    sa.Column("status", sa.String(16), nullable=False),  # pending | answered | expired
    sa.Column("answer", JSONType),
    sa.Column("answered_at", UTCDateTime),
    sa.Column("answered_by", sa.String(200)),
    sa.UniqueConstraint("task_id", "key", name="uq_questions_task_key"),
    sa.Index("ix_questions_pending", "status", "asked_at"),
)

task_logs = sa.Table(
    "task_logs",
    metadata,
    sa.Column("task_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

#: Workflow edges: `task_id` may be claimed only once `depends_on` has completed.
task_dependencies = sa.Table(
    "task_dependencies",
    metadata,
    sa.Column("task_id", sa.String(36), primary_key=True),
    sa.Column("depends_on", sa.String(36), primary_key=True),
    sa.Index("ix_task_dependencies_on", "depends_on"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("cron", sa.String(200)),
    sa.Column("interval_seconds", sa.Float),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("overlap", sa.String(16), nullable=False),  # skip | queue | cancel_previous
    sa.Column("catch_up", sa.String(16), nullable=False),  # none | latest | all
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("next_run_at", UTCDateTime),
    sa.Column("last_fired_at", UTCDateTime),
    sa.Column("last_task_id", sa.String(36)),
    sa.Column("owner", sa.String(200)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(
        "ix_schedules_due",
        "next_run_at",
        postgresql_where=sa.text("NOT paused"),
        sqlite_where=sa.text("NOT paused"),
    ),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),  # sha256 of the secret part
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("slots", sa.Integer),  # its MAX_CONCURRENT_TASKS (migration 0009)
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    """A UTC timestamp as the HTTP API writes it (`…Z`), so that events and answers agree."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def iso_or_none(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def is_sqlite(url: str) -> bool:
    return sa.make_url(url).get_backend_name() == "sqlite"


def _install_sqlite_hooks(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # First: every pragma after it may need the database's lock, and waits for it
        # instead of failing at once with "database is locked" under write load.
        cursor.execute("PRAGMA busy_timeout=30000")
        # Takes effect only on a new, empty database (sqlite_space.py converts older ones).
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def is_closed(dbapi_connection: Any) -> bool:
    """Whether the server closed this (asyncpg) connection: asyncpg notices the socket
    closing, so this costs no round trip."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    closed = getattr(driver, "is_closed", None)
    return bool(closed()) if closed is not None else False


def _skip_closed_connections(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if is_closed(dbapi_connection):
            # The pool discards it and checks out another (SQLAlchemy's documented recipe).
            raise exc.DisconnectionError("the server closed this connection")


@dataclass
class Database:
    """The engines of one database: `writer` for the store's writes, `reader` for the rest."""

    url: str
    writer: AsyncEngine
    reader: AsyncEngine

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader.sync_engine.pool is not self.writer.sync_engine.pool:
            await self.reader.dispose()


def open_database(url: str, *, pool_size: int = 20) -> Database:
    """No overflow connections beyond `pool_size`: SQLAlchemy closes an overflow connection
    as soon as it is returned, so under more concurrent requests than the pool holds every
    request paid for opening one (a PostgreSQL backend, or an aiosqlite thread). Measured
    with wrk, 50 connections, PostgreSQL: 10 + 10 overflow, p99 205 ms at 1,150 requests/s;
    20 and none, 68 ms at 1,640."""
    if is_sqlite(url):
        # The store's writer keeps one connection for itself; the overflow one is for
        # writes outside it (migrations, maintenance, tests), which SQLite serializes.
        writer = create_async_engine(url, pool_size=1, max_overflow=1, pool_timeout=60)
        _install_sqlite_hooks(writer, "BEGIN IMMEDIATE")
        reader = create_async_engine(url, pool_size=pool_size, max_overflow=0)
        _install_sqlite_hooks(reader, "BEGIN")
        return Database(url, writer, reader)
    # No pre-ping: on asyncpg it is BEGIN, `;` and ROLLBACK on every checkout, three round
    # trips before each request's one query. A connection the server closed is known
    # without asking (see `_skip_closed_connections`); one that fails anyway fails its
    # request, which the API answers 503 `unavailable`.
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_recycle=3600)
    _skip_closed_connections(engine)
    # Reads run without BEGIN and ROLLBACK around them (two round trips saved per read).
    # At PostgreSQL's READ COMMITTED every statement has its own snapshot anyway; a read
    # that needs one snapshot for several statements asks for REPEATABLE READ itself.
    reader = engine.execution_options(isolation_level="AUTOCOMMIT")
    return Database(url, engine, reader)


TERMINAL_VALUES: tuple[str, ...] = tuple(_terminal)
ACTIVE_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in State if s not in TERMINAL_STATES))
