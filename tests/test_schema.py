"""The schema is written twice, as tables in `taskstate.core.db` and as the alembic migrations:
a database migrated to head must be exactly what the metadata declares, on both backends."""

from __future__ import annotations

import warnings
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.schema import CreateIndex

from taskstate.core.db import metadata, open_database
from taskstate.core.migrations import upgrade_to_head


def _differences(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    if connection.dialect.name != "sqlite":
        return list(compare_metadata(context, metadata))
    # SQLite's reflection cannot represent every index: it drops the sort order (`created_at
    # DESC` comes back as `created_at`) and skips expression indexes (0006's
    # `coalesce(owner, '')`), so autogenerate reports the DESC indexes as changed and warns of
    # the expression one. Indexes are left out of this comparison on SQLite and compared by
    # their DDL instead (`_index_ddl_differences`), which keeps every detail.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
        found = compare_metadata(context, metadata)
    return [d for d in found if not (isinstance(d, tuple) and d[0] in ("add_index", "remove_index"))]


def _index_ddl_differences(connection: sa.Connection) -> list[str]:
    """On SQLite: each index as the database keeps it (`sqlite_master.sql`) against the
    metadata's index compiled for SQLite."""
    stored = dict(
        connection.execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        ).all()
    )
    declared = {
        index.name: str(CreateIndex(index).compile(dialect=connection.dialect)).strip()
        for table in metadata.sorted_tables
        for index in table.indexes
    }
    problems = [f"only in the database: {stored[name]}" for name in sorted(set(stored) - set(declared))]
    for name, ddl in sorted(declared.items()):
        if stored.get(name) != ddl:
            problems.append(f"{name}: migrated {stored.get(name)!r}, declared {ddl!r}")
    return problems


async def test_the_migrations_build_exactly_the_declared_schema(empty_database_url: str) -> None:
    db = open_database(empty_database_url)
    try:
        await upgrade_to_head(db.writer)
        async with db.writer.connect() as conn:
            differences = await conn.run_sync(_differences)
            listed = "\n".join(map(str, differences))
            assert differences == [], f"db.py and the migrations disagree:\n{listed}"
            if db.is_sqlite:
                problems = await conn.run_sync(_index_ddl_differences)
                assert not problems, "\n".join(problems)
    finally:
        await db.dispose()
