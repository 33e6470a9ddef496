"""Drop ix_tasks_worker: no query needs it, and the planner misused it.

Every query on `worker_id` also asks for an active state, which the partial
`ix_tasks_active` answers. Without statistics (a new table), PostgreSQL chose this index
for the grouped transition UPDATE (`worker_id = v.b_worker`: every running task of the
instance, dead entries included) instead of the primary key, and a run of the e2e
benchmark took twice as long. It also cost an index entry per transition.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_tasks_worker", table_name="tasks")


def downgrade() -> None:
    where = sa.text("worker_id IS NOT NULL")
    op.create_index("ix_tasks_worker", "tasks", ["worker_id"], postgresql_where=where, sqlite_where=where)
