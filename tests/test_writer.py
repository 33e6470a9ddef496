"""The group-commit writer (`taskstate.core.writer`), on a real database of each backend:
writes queued together commit together, a failing op fails alone, transition rows get
gap-free seqs in order, and nobody hears of a write before its commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from taskstate.core.bus import Event
from taskstate.core.db import Database, open_database, tasks, utcnow
from taskstate.core.migrations import upgrade_to_head
from taskstate.core.writer import TransitionRecord, WriteBatch, Writer
from tests.support.databases import task_row


def insert(task_id: str, *, transition: bool = False) -> Any:
    """An op that inserts a task (and records its birth transition, if asked)."""

    async def op(wb: WriteBatch) -> str:
        await wb.conn.execute(tasks.insert(), [task_row(task_id)])
        if transition:
            wb.record(TransitionRecord(task_id, None, "queued", utcnow(), "created", "test", {}))
        return task_id

    return op


class Commits:
    """What the writer announces after each commit, and what a reader saw at that moment."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.records: list[list[TransitionRecord]] = []
        self.checks: list[asyncio.Task[set[str]]] = []

    def __call__(self, records: list[TransitionRecord], live: list[Event]) -> None:
        self.records.append(list(records))
        # Called synchronously right after the commit: a reader on another connection, started
        # now, must already see the rows.
        self.checks.append(asyncio.create_task(self._visible()))

    async def _visible(self) -> set[str]:
        async with self.db.reader.connect() as conn:
            return set((await conn.execute(sa.select(tasks.c.id))).scalars())


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    await upgrade_to_head(database.writer)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def writer(db: Database) -> AsyncIterator[tuple[Writer, Commits]]:
    commits = Commits(db)
    w = Writer(db.writer, commits)
    w.start()
    try:
        yield w, commits
    finally:
        await w.stop()
        await asyncio.gather(*commits.checks)


async def stored_ids(db: Database) -> set[str]:
    async with db.reader.connect() as conn:
        return set((await conn.execute(sa.select(tasks.c.id))).scalars())


async def test_writes_submitted_together_commit_as_one_batch(
    writer: tuple[Writer, Commits], db: Database
) -> None:
    w, _ = writer
    ids = [f"t{i}" for i in range(20)]
    answers = await asyncio.gather(*(w.submit(insert(task_id)) for task_id in ids))
    assert answers == ids
    assert w.ops == 20
    assert w.batches == 1
    assert await stored_ids(db) == set(ids)


async def test_a_failing_op_in_a_batch_fails_alone_and_the_others_commit(
    writer: tuple[Writer, Commits], db: Database
) -> None:
    w, _ = writer
    await w.submit(insert("taken"))
    ops = [insert("a"), insert("b"), insert("taken"), insert("c")]  # the third repeats a key
    answers = await asyncio.gather(*(w.submit(op) for op in ops), return_exceptions=True)
    assert answers[:2] == ["a", "b"] and answers[3] == "c", answers
    assert isinstance(answers[2], IntegrityError), answers[2]
    assert w.failed == 2, "the batch's transaction, then the failing op's own"
    assert await stored_ids(db) == {"taken", "a", "b", "c"}
    # The writer goes on after a failure (on a new connection).
    assert await w.submit(insert("d")) == "d"


async def test_transition_rows_get_gap_free_seqs_in_op_order_and_are_announced_after_commit(
    writer: tuple[Writer, Commits], db: Database
) -> None:
    w, commits = writer
    await asyncio.gather(*(w.submit(insert(f"t{i}", transition=True)) for i in range(5)))
    await w.submit(insert("t5", transition=True))
    announced = [rec for batch in commits.records for rec in batch]
    assert [(rec.seq, rec.task_id) for rec in announced] == [(i + 1, f"t{i}") for i in range(6)]
    seen = await asyncio.gather(*commits.checks)
    assert {"t0", "t1", "t2", "t3", "t4"} <= seen[0], "announced before a reader could see the commit"
    async with db.reader.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT seq, task_id FROM transitions ORDER BY seq"))).all()
    assert [tuple(r) for r in rows] == [(i + 1, f"t{i}") for i in range(6)]


async def test_a_failed_write_announces_nothing(writer: tuple[Writer, Commits], db: Database) -> None:
    w, commits = writer

    async def fails_after_recording(wb: WriteBatch) -> None:
        await insert("gone", transition=True)(wb)
        raise RuntimeError("the op fails after writing")

    with pytest.raises(RuntimeError, match="fails after writing"):
        await w.submit(fails_after_recording)
    assert commits.records == []
    assert await stored_ids(db) == set()
    await w.submit(insert("next", transition=True))
    assert [[rec.seq for rec in batch] for batch in commits.records] == [[1]], "a seq was used up"


async def test_submit_refuses_when_the_writer_is_not_running(db: Database) -> None:
    w = Writer(db.writer, lambda records, live: None)
    with pytest.raises(RuntimeError, match="not running"):
        await w.submit(insert("x"))
