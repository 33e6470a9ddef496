"""Migrations that change existing data's rules, run over real rows on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from taskstate.core.db import open_database, tasks
from taskstate.core.migrations import alembic_config
from tests.support.databases import task_row


def _row(task_id: str, key: str | None, owner: str | None) -> dict[str, object]:
    return task_row(task_id, idempotency_key=key, owner=owner)


async def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    db = open_database(url)
    try:
        async with db.writer.connect() as conn:
            await conn.run_sync(run)
            await conn.commit()
    finally:
        await db.dispose()


async def _insert(url: str, *rows: dict[str, object]) -> None:
    db = open_database(url)
    try:
        async with db.writer.begin() as conn:
            await conn.execute(tasks.insert(), list(rows))
    finally:
        await db.dispose()


async def _keys(url: str) -> list[tuple[str, str | None, str | None]]:
    db = open_database(url)
    try:
        async with db.reader.connect() as conn:
            query = sa.select(tasks.c.id, tasks.c.idempotency_key, tasks.c.owner).order_by(tasks.c.id)
            return [tuple(r) for r in (await conn.execute(query)).all()]
    finally:
        await db.dispose()


async def test_0006_makes_idempotency_keys_per_owner_and_keeps_every_task(empty_database_url: str) -> None:
    database_url = empty_database_url
    await _migrate(database_url, "0005")
    before = [_row("t1", "k", None), _row("t2", "j", "alice"), _row("t3", None, None), _row("t4", None, None)]
    await _insert(database_url, *before)
    try:
        await _insert(database_url, _row("t5", "k", "bob"))
        raise AssertionError("0005 holds keys across owners")
    except IntegrityError:
        pass

    await _migrate(database_url, "0006")
    assert await _keys(database_url) == [
        ("t1", "k", None),
        ("t2", "j", "alice"),
        ("t3", None, None),
        ("t4", None, None),
    ]
    await _insert(database_url, _row("t5", "k", "bob"), _row("t6", "j", None), _row("t7", None, "bob"))
    for duplicate in (_row("t8", "k", None), _row("t8", "k", "bob"), _row("t8", "j", "alice")):
        try:
            await _insert(database_url, duplicate)
            raise AssertionError(f"a second task for one owner's key: {duplicate}")
        except IntegrityError:
            pass

    # Back to 0005 once no key is shared between owners.
    db = open_database(database_url)
    try:
        async with db.writer.begin() as conn:
            await conn.execute(tasks.delete().where(tasks.c.id.in_(["t5", "t6"])))
    finally:
        await db.dispose()
    await _migrate(database_url, "0005", down=True)
    try:
        await _insert(database_url, _row("t9", "k", "carol"))
        raise AssertionError("the downgrade restores keys across owners")
    except IntegrityError:
        pass
    await _migrate(database_url, "head")
    assert len(await _keys(database_url)) == 5
