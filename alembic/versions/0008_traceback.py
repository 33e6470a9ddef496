"""A failed task keeps its traceback, bounded in size, beside its error message and class.

Where the message says what went wrong, the traceback says where: without it a user who
comes back to a failed run has to reproduce it to find the line. The column is nullable
and written only on failure, so existing rows need nothing.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("traceback", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("traceback")
