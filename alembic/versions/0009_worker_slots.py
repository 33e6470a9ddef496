"""Each instance records how many jobs it runs at once (its slots), for the workers page.

The capacity is a setting of each instance (MAX_CONCURRENT_TASKS), which may differ
between instances, so it is written with the instance's row when it registers. Nullable: rows
of instances registered before this revision have none until they register again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("slots", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("slots")
