"""Workflows: child tasks, dependencies, approval gates and schedules (CONTRACT §6).

- `tasks.parent_id`, `tasks.root_id`: a task spawned by a job carries its parent and the
  top of its tree; a task without a parent is its own root (existing rows get their id).
- `tasks.blockers`: how many things a queued task still waits for before it may be
  claimed (unfinished dependencies, a pending approval). The queue's partial index now
  holds only tasks with none, so that blocked tasks, however many, never slow a claim.
- `tasks.depends_on`, `tasks.waiting_for`, `tasks.requires_approval`: what a client sees.
- `task_dependencies`: the edges, looked up from the dependency's side when it ends.
- `schedules`: recurring tasks; each firing creates its task under an idempotency key
  made of the schedule and the firing's time, so it is created once whatever the number
  of instances.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
UTC_DATETIME = sa.DateTime(timezone=True)


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    # Added in place on both engines (no table rebuild: on SQLite a rebuild would lose
    # 0006's expression index, which SQLAlchemy cannot reflect).
    op.add_column("tasks", sa.Column("parent_id", sa.String(36)))
    op.add_column("tasks", sa.Column("root_id", sa.String(36)))  # always set by the service
    op.add_column("tasks", sa.Column("blockers", sa.Integer, nullable=False, server_default="0"))
    op.add_column("tasks", sa.Column("depends_on", JSON))
    op.add_column("tasks", sa.Column("waiting_for", JSON))
    op.add_column(
        "tasks", sa.Column("requires_approval", sa.Boolean, nullable=False, server_default=sa.false())
    )
    # Whether a task's end concerns others: its end then looks for them (most tasks have none).
    op.add_column("tasks", sa.Column("has_children", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("tasks", sa.Column("has_dependents", sa.Boolean, nullable=False, server_default=sa.false()))
    op.execute("UPDATE tasks SET root_id = id")
    op.create_index("ix_tasks_parent", "tasks", ["parent_id"], **_where("parent_id IS NOT NULL"))
    op.create_index("ix_tasks_root", "tasks", ["root_id", sa.text("created_at DESC"), sa.text("id DESC")])
    op.drop_index("ix_tasks_queue", table_name="tasks")
    op.create_index(
        "ix_tasks_queue",
        "tasks",
        [sa.text("priority DESC"), "created_at"],
        **_where("state = 'queued' AND blockers = 0"),
    )
    op.create_table(
        "task_dependencies",
        sa.Column("task_id", sa.String(36), primary_key=True),
        sa.Column("depends_on", sa.String(36), primary_key=True),
    )
    op.create_index("ix_task_dependencies_on", "task_dependencies", ["depends_on"])
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("cron", sa.String(200)),
        sa.Column("interval_seconds", sa.Float),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("catch_up", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("next_run_at", UTC_DATETIME),
        sa.Column("last_fired_at", UTC_DATETIME),
        sa.Column("last_task_id", sa.String(36)),
        sa.Column("owner", sa.String(200)),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_schedules_due", "schedules", ["next_run_at"], **_where("NOT paused"))


def downgrade() -> None:
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
    op.drop_index("ix_task_dependencies_on", table_name="task_dependencies")
    op.drop_table("task_dependencies")
    op.drop_index("ix_tasks_queue", table_name="tasks")
    op.create_index(
        "ix_tasks_queue", "tasks", [sa.text("priority DESC"), "created_at"], **_where("state = 'queued'")
    )
    op.drop_index("ix_tasks_root", table_name="tasks")
    op.drop_index("ix_tasks_parent", table_name="tasks")
    for column in (
        "has_dependents",
        "has_children",
        "requires_approval",
        "waiting_for",
        "depends_on",
        "blockers",
        "root_id",
        "parent_id",
    ):
        op.execute(f"ALTER TABLE tasks DROP COLUMN {column}")  # in place, as upgrade added them
