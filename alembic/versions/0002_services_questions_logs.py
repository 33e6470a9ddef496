"""Service jobs, questions to the user, task logs and the run report.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("endpoint", sa.Text))
        batch.add_column(sa.Column("service_info", JSONType))
        batch.add_column(sa.Column("pending_questions", JSONType))
        batch.add_column(sa.Column("log_seq", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("execution_summary", JSONType))
        batch.add_column(sa.Column("phase_results", JSONType))
        batch.add_column(sa.Column("system_info", JSONType))

    op.create_table(
        "questions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("choices", JSONType),
        sa.Column("context", JSONType),
        sa.Column("asked_at", TS, nullable=False),
        sa.Column("timeout_at", TS),
        sa.Column("default_answer", JSONType),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("answer", JSONType),
        sa.Column("answered_at", TS),
        sa.Column("answered_by", sa.String(200)),
        sa.UniqueConstraint("task_id", "key", name="uq_questions_task_key"),
    )
    op.create_index("ix_questions_pending", "questions", ["status", "asked_at"])

    op.create_table(
        "task_logs",
        sa.Column("task_id", sa.String(36), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_logs")
    op.drop_index("ix_questions_pending", table_name="questions")
    op.drop_table("questions")
    with op.batch_alter_table("tasks") as batch:
        for column in (
            "system_info",
            "phase_results",
            "execution_summary",
            "log_seq",
            "pending_questions",
            "service_info",
            "endpoint",
        ):
            batch.drop_column(column)
