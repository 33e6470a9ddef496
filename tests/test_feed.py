"""The transition feed (`taskstate.core.feed`): whatever order transitions arrive in (this
instance's commits, other instances' notifications, the database), the bus gets each once,
in `seq` order; a gap that lasts is filled from the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from taskstate.core.bus import Event, EventBus, Subscription
from taskstate.core.feed import GAP_WAIT_SECONDS, TransitionFeed
from taskstate.core.writer import TransitionRecord


def record(seq: int) -> TransitionRecord:
    return TransitionRecord(
        task_id=f"task-{seq}",
        from_state=None,
        to_state="queued",
        at=datetime.now(UTC),
        reason=None,
        actor="test",
        task={},
        seq=seq,
    )


def event_of(rec: TransitionRecord) -> Event:
    return Event.of({"type": "transition", "seq": rec.seq, "task_id": rec.task_id, "to": rec.to_state})


class Table:
    """The committed transitions, as the feed reads them from the database."""

    def __init__(self) -> None:
        self.rows: dict[int, TransitionRecord] = {}
        self.committed = 0
        self.reads: list[int] = []

    def commit(self, *seqs: int, deleted: tuple[int, ...] = ()) -> list[TransitionRecord]:
        records = [record(seq) for seq in seqs]
        for rec in records:
            assert rec.seq is not None
            if rec.seq not in deleted:
                self.rows[rec.seq] = rec
            self.committed = max(self.committed, rec.seq)
        return records

    async def read(self, after: int, limit: int) -> tuple[list[TransitionRecord], int]:
        self.reads.append(after)
        found = [self.rows[seq] for seq in sorted(self.rows) if seq > after][:limit]
        return found, self.committed


class Harness:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.table = Table()
        self.remote: list[int | None] = []
        self.feed = TransitionFeed(
            self.bus, event_of, self.table.read, lambda recs: self.remote.extend(r.seq for r in recs)
        )
        self.subscription: Subscription = self.bus.subscribe(maxsize=100_000)

    async def delivered(self, count: int, within: float = 5) -> list[int | None]:
        """The seqs of the next `count` events the bus delivers (waiting for them, bounded)."""
        async with asyncio.timeout(within):
            return [(await self.subscription.get()).seq for _ in range(count)]

    def nothing_more(self) -> bool:
        return self.subscription.pending == 0


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    await h.feed.catch_up()  # where "now" is: an empty table, so seq 1 comes next
    try:
        yield h
    finally:
        await h.feed.close()


async def test_seqs_that_arrive_out_of_order_are_held_and_delivered_in_order(harness: Harness) -> None:
    one, two, three = harness.table.commit(1, 2, 3)
    harness.feed.local([three])
    harness.feed.local([two])
    assert harness.nothing_more(), "delivered past a seq it has not seen"
    harness.feed.local([one])
    assert await harness.delivered(3) == [1, 2, 3]
    assert harness.nothing_more()
    assert harness.remote == []


async def test_a_gap_that_lasts_is_filled_from_the_database(harness: Harness) -> None:
    """Seq 1 was committed by another instance whose notification never came."""
    _, two, three = harness.table.commit(1, 2, 3)
    started = asyncio.get_running_loop().time()
    harness.feed.local([two, three])
    assert await harness.delivered(3) == [1, 2, 3]
    assert asyncio.get_running_loop().time() - started >= GAP_WAIT_SECONDS * 0.9, "read before waiting"
    assert harness.remote == [1], "only the missing transition came from the database"
    assert harness.nothing_more()


async def test_seqs_the_table_no_longer_has_are_stepped_over(harness: Harness) -> None:
    """A held seq whose predecessor was deleted (retention) is not held forever."""
    _, two, three = harness.table.commit(1, 2, 3, deleted=(1,))
    harness.feed.local([two, three])
    assert await harness.delivered(2) == [2, 3]
    assert harness.nothing_more()


async def test_a_transition_heard_twice_is_delivered_once(harness: Harness) -> None:
    one, two = harness.table.commit(1, 2)
    harness.feed.local([one])
    harness.feed.remote([one, two])  # another instance's notification, overlapping
    harness.feed.remote([two])
    await harness.feed.catch_up()  # and the database, too
    assert await harness.delivered(2) == [1, 2]
    assert harness.nothing_more()
    assert harness.remote == [2]


async def test_catch_up_delivers_what_was_committed_elsewhere_in_pages(harness: Harness) -> None:
    harness.table.commit(*range(1, 2501))
    await harness.feed.catch_up()
    assert await harness.delivered(2500) == list(range(1, 2501))
    assert harness.table.reads[-3:] == [0, 1000, 2000]  # READ_PAGE at a time
