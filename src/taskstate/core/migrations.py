"""Schema migrations: alembic, run from inside the app.

`taskstate serve` migrates to head on start so that a new user's first
command just works; `taskstate migrate` does only that. The scripts live in
the repository's `alembic/` (and in the wheel as `taskstate/_alembic`).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from taskstate.core import sqlite_space

#: The taskstate package (this module sits in its `core`).
_PACKAGE = Path(__file__).resolve().parent.parent


def _script_location() -> Path:
    for candidate in (_PACKAGE / "_alembic", _PACKAGE.parent.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("taskstate's alembic scripts are missing from this installation")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


#: Serialises migrations when several instances start at once on one PostgreSQL database.
MIGRATION_LOCK = 0x7461736B  # "task"


async def upgrade_to_head(engine: AsyncEngine) -> None:
    def _upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            await connection.commit()
        try:
            await connection.run_sync(_upgrade)
            await connection.commit()
        finally:
            if postgres:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                await connection.commit()
    if engine.dialect.name == "sqlite":
        await sqlite_space.ensure_incremental(engine)


async def current_revision(engine: AsyncEngine) -> str | None:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(_current)
