"""Idempotency keys are unique per owner, not across the whole service.

With auth on, a key was global: bob posting alice's key got alice's task back. The
unique index is now on `(idempotency_key, coalesce(owner, ''))` where a key is set, so
each owner (NULL, without auth, counts as one owner) has its own keys. The key leads, so
that a lookup by key alone still uses the index.

On SQLite the old uniqueness is the table's own `UNIQUE (idempotency_key)` (0001), which
cannot be dropped: the table is rebuilt without it (SQLite's documented procedure; no
foreign key, trigger or view refers to `tasks`), its indexes re-created from their own
SQL. On PostgreSQL the partial unique index of 0004 is simply replaced.

A downgrade fails if two owners now share a key, as it should: 0005 cannot hold that.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYED = "idempotency_key IS NOT NULL"
PER_OWNER = ["idempotency_key", sa.text("coalesce(owner, '')")]


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def _drop_global_key_on_sqlite() -> None:
    bind = op.get_bind()
    [table_sql] = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tasks'")
    ).scalars()
    rebuilt, found = re.subn(r",\s*UNIQUE \(idempotency_key\)", "", table_sql)
    if not found:  # upgraded, downgraded (which made it an index) and upgraded again
        op.drop_index("ix_tasks_idempotency", table_name="tasks")
        return
    indexes = "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' AND sql IS NOT NULL"
    index_sqls = list(bind.execute(sa.text(indexes)).scalars())
    rebuilt, named = re.subn(r"^CREATE TABLE tasks \(", "CREATE TABLE tasks_0006 (", rebuilt)
    assert named == 1, f"unexpected definition of the tasks table: {table_sql}"
    op.execute(rebuilt)
    op.execute("INSERT INTO tasks_0006 SELECT * FROM tasks")
    op.execute("DROP TABLE tasks")
    op.execute("ALTER TABLE tasks_0006 RENAME TO tasks")
    for sql in index_sqls:
        op.execute(sql)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _drop_global_key_on_sqlite()
    else:
        op.drop_index("ix_tasks_idempotency", table_name="tasks")
    op.create_index("ix_tasks_owner_idempotency", "tasks", PER_OWNER, unique=True, **_where(KEYED))


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_idempotency", table_name="tasks")
    # On SQLite a full unique index stands in for the table constraint of 0001: the same rule,
    # and what 0005's `ON CONFLICT (idempotency_key)` (with no WHERE) needs there.
    op.create_index(
        "ix_tasks_idempotency",
        "tasks",
        ["idempotency_key"],
        unique=True,
        postgresql_where=sa.text(KEYED),
    )
