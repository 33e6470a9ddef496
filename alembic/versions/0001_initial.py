"""Initial schema: tasks, transitions (append-only, seq), seq_counter, workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigIntKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
ACTIVE = "state NOT IN ('cancelled', 'completed', 'failed')"


def upgrade() -> None:
    op.create_table(
        "tasks",
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
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("trigger_source", sa.String(200)),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("run_at", TS, nullable=False),
        sa.Column("timeout_seconds", sa.Float),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("heartbeat_at", TS),
        sa.Column("checkpoint", sa.Text),  # JSON text: parsed (and validated) on restore
        sa.Column("checkpoint_at", TS),
        sa.Column("restoration_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_restored_at", TS),
        sa.Column("restoration_source", sa.String(32)),
        sa.Column("restoration_decision", sa.Text),
        sa.Column("restore_pending", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("retry_of", sa.String(36)),
        sa.Column("last_reason", sa.Text),
    )
    op.create_index(
        "ix_tasks_queue",
        "tasks",
        [sa.text("priority DESC"), "created_at"],
        postgresql_where=sa.text("state = 'queued'"),
        sqlite_where=sa.text("state = 'queued'"),
    )
    op.create_index(
        "ix_tasks_active",
        "tasks",
        ["created_at"],
        postgresql_where=sa.text(ACTIVE),
        sqlite_where=sa.text(ACTIVE),
    )
    op.create_index("ix_tasks_history", "tasks", [sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index(
        "ix_tasks_state_created", "tasks", ["state", sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index(
        "ix_tasks_type_created", "tasks", ["type", sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index("ix_tasks_finished", "tasks", ["finished_at"])
    op.create_index(
        "ix_tasks_worker",
        "tasks",
        ["worker_id"],
        postgresql_where=sa.text("worker_id IS NOT NULL"),
        sqlite_where=sa.text("worker_id IS NOT NULL"),
    )

    op.create_table(
        "transitions",
        sa.Column("seq", BigIntKey, primary_key=True, autoincrement=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_index("ix_transitions_task", "transitions", ["task_id", "seq"])

    seq_counter = op.create_table(
        "seq_counter",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(seq_counter, [{"id": 1, "value": 0}])

    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("seq_counter")
    op.drop_table("transitions")
    op.drop_table("tasks")
