"""Insights: aggregates of the tasks of a time window, for the charts of `#/insights`.

Throughput per bucket (finished tasks by end state), counts by type, duration
percentiles per type, and the queue (depth at each bucket's end, arrivals, starts, wait).

Every query reads a bounded set through an existing index, never the whole table:
tasks that finished in or after the window (`ix_tasks_finished`), the active tasks
(`ix_tasks_active`) and tasks created in the window (`ix_tasks_history`). Both engines
give the same, exact answer, to the microsecond: PostgreSQL works on its own timestamps
and intervals (`date_bin` for buckets), SQLite on integer microseconds computed from the
stored text. Buckets are aligned to multiples of the interval since the Unix epoch, and
percentiles are nearest-rank (the k-th smallest, k = ceil(p * n / 100)), so that a
percentile is always a duration that occurred.

A task's time in the queue runs from `created_at` to its first start (`started_at`), or
to its end for a task that ended without starting (cancelled while queued); a task
re-queued after its worker was lost counts as started already.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from taskstate.core.db import TERMINAL_VALUES, Database, UTCDateTime, iso, tasks

T = TypeVar("T")

#: The percentiles reported for durations.
PERCENTILES = (50, 95, 99)
US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class InsightsQuery:
    """A window `[since, until)` cut into buckets of `interval_seconds`, aligned to multiples
    of it since the epoch (the caller aligns `since` and `until`); `type` and `owner` filter."""

    since: datetime
    until: datetime
    interval_seconds: int
    type: str | None = None
    owner: str | None = None

    @property
    def since_us(self) -> int:
        return epoch_micros(self.since)

    @property
    def until_us(self) -> int:
        return epoch_micros(self.until)

    @property
    def buckets(self) -> int:
        return (self.until_us - self.since_us) // (self.interval_seconds * US)


@dataclass
class _Bucket:
    start: datetime
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    arrived: int = 0
    left: int = 0
    started: int = 0
    wait_sum_us: int = 0
    wait_max_us: int | None = None
    depth: int = 0


@dataclass
class _TypeCounts:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TERMINAL_VALUES, 0))


def epoch_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float)."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def _epoch_us(column: Any) -> sa.ColumnElement[int]:
    """SQLite: the column's instant in integer microseconds since the epoch, exactly.

    SQLite stores `YYYY-MM-DD HH:MM:SS.ffffff` (SQLAlchemy always writes six digits). Its
    date functions see the whole seconds only: they round to the millisecond, and so took
    `…:34.9996` for second 35, a second late once the microseconds were added.
    """
    seconds = sa.cast(sa.func.strftime("%s", sa.func.substr(column, 1, 19)), sa.BigInteger)
    return seconds * US + sa.cast(sa.func.substr(column, 21, 6), sa.BigInteger)


def _span(end: Any, start: Any, sqlite: bool) -> sa.ColumnElement[Any]:
    """`end - start`: integer microseconds on SQLite, an interval on PostgreSQL (sorted and
    summed natively, read as a `timedelta`): see `_micros`."""
    if sqlite:
        return _epoch_us(end) - _epoch_us(start)
    return sa.type_coerce(end - start, sa.Interval())


def _micros(value: int | timedelta | Decimal) -> int:
    """A `_span` (or a sum of them) as read, in integer microseconds."""
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * US + value.microseconds
    return int(value)


def _bucket(column: Any, q: InsightsQuery, sqlite: bool) -> sa.ColumnElement[Any]:
    """Which bucket `column` falls in (it is never before `since`): an integer division of
    microseconds on SQLite; `date_bin` on PostgreSQL (the bucket's start, which needs no
    arithmetic per row): see `_index`."""
    if sqlite:
        offset = _epoch_us(column) - sa.literal(q.since_us, sa.BigInteger)
        return sa.cast(offset, sa.BigInteger).op("/")(sa.literal(q.interval_seconds * US, sa.BigInteger))
    step = sa.literal(timedelta(seconds=q.interval_seconds), sa.Interval())
    return sa.func.date_bin(step, column, sa.literal(EPOCH, UTCDateTime()), type_=UTCDateTime())


def _index(value: int | datetime, q: InsightsQuery) -> int:
    """A `_bucket` as read: the bucket's index."""
    if isinstance(value, datetime):
        return (epoch_micros(value) - q.since_us) // (q.interval_seconds * US)
    return value


class Insights:
    """The aggregate reads behind `GET /api/v2/insights`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def compute(self, q: InsightsQuery) -> dict[str, Any]:
        sqlite = self.db.is_sqlite
        buckets = [_Bucket(q.since + timedelta(seconds=q.interval_seconds * i)) for i in range(q.buckets)]
        by_type: defaultdict[str, _TypeCounts] = defaultdict(_TypeCounts)

        async def outcomes(conn: AsyncConnection) -> list[dict[str, Any]]:
            await self._finished(conn, q, sqlite, buckets, by_type)
            return await self._durations(conn, q, sqlite)

        async def queue(conn: AsyncConnection) -> int:
            await self._arrivals(conn, q, sqlite, buckets)
            return await self._queue(conn, q, sqlite, buckets)

        # Side by side, on two connections: the finished tasks, and the queue (whose
        # arrivals and departures must agree, so they share one snapshot).
        durations, depth = await asyncio.gather(self._snapshot(outcomes), self._snapshot(queue))
        for b in buckets:
            depth += b.arrived - b.left
            b.depth = depth
        return {
            "since": iso(q.since),
            "until": iso(q.until),
            "interval_seconds": q.interval_seconds,
            "type": q.type,
            "throughput": [
                {
                    "start": iso(b.start),
                    "completed": b.completed,
                    "failed": b.failed,
                    "cancelled": b.cancelled,
                }
                for b in buckets
            ],
            "by_type": [{"type": t, **c.counts} for t, c in sorted(by_type.items())],
            "durations": durations,
            "queue": [
                {
                    "start": iso(b.start),
                    "depth": b.depth,
                    "arrived": b.arrived,
                    "started": b.started,
                    "wait_avg_seconds": b.wait_sum_us / b.started / US if b.started else None,
                    "wait_max_seconds": b.wait_max_us / US if b.wait_max_us is not None else None,
                }
                for b in buckets
            ],
        }

    async def _snapshot(self, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`read`'s statements in one snapshot, on a connection of its own."""
        async with self.db.reader.connect() as conn:
            if not self.db.is_sqlite:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                return await read(conn)

    def _filters(self, q: InsightsQuery) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        if q.type is not None:
            out.append(tasks.c.type == q.type)
        if q.owner is not None:
            out.append(tasks.c.owner == q.owner)
        return out

    def _finished_in(self, q: InsightsQuery) -> list[sa.ColumnElement[bool]]:
        """Tasks that finished in the window: a range of `ix_tasks_finished`."""
        return [
            tasks.c.finished_at.is_not(None),
            tasks.c.finished_at >= q.since,
            tasks.c.finished_at < q.until,
            *self._filters(q),
        ]

    async def _finished(
        self,
        conn: AsyncConnection,
        q: InsightsQuery,
        sqlite: bool,
        buckets: list[_Bucket],
        by_type: defaultdict[str, _TypeCounts],
    ) -> None:
        bucket = _bucket(tasks.c.finished_at, q, sqlite).label("bucket")
        query = (
            sa.select(bucket, tasks.c.type, tasks.c.state, sa.func.count().label("n"))
            .where(*self._finished_in(q))
            .group_by(bucket, tasks.c.type, tasks.c.state)
        )
        for row in (await conn.execute(query)).all():
            state, b = row.state, buckets[_index(row.bucket, q)]
            setattr(b, state, getattr(b, state) + row.n)
            by_type[row.type].counts[state] += row.n

    async def _durations(self, conn: AsyncConnection, q: InsightsQuery, sqlite: bool) -> list[dict[str, Any]]:
        """Nearest-rank percentiles of `finished_at - started_at` per type."""
        duration = _span(tasks.c.finished_at, tasks.c.started_at, sqlite)
        where = [*self._finished_in(q), tasks.c.started_at.is_not(None)]
        found: dict[str, dict[str, Any]] = {}
        if not sqlite:
            # percentile_disc is nearest-rank: the first value at or past the fraction.
            fractions = sa.literal([p / 100 for p in PERCENTILES], ARRAY(sa.Float()))
            picked = sa.func.percentile_disc(fractions).within_group(duration)
            query = (
                sa.select(
                    tasks.c.type,
                    sa.func.count().label("n"),
                    sa.type_coerce(picked, ARRAY(sa.Interval())).label("ps"),
                )
                .where(*where)
                .group_by(tasks.c.type)
            )
            for row in (await conn.execute(query)).all():
                found[row.type] = {
                    "type": row.type,
                    "count": row.n,
                    **{f"p{p}_seconds": _micros(v) / US for p, v in zip(PERCENTILES, row.ps, strict=True)},
                }
            return [found[t] for t in sorted(found)]
        # SQLite has no percentile aggregate: the rows of rank k with 100 k >= p n > 100 (k - 1).
        d = duration.label("d")
        ranked = (
            sa.select(
                tasks.c.type,
                d,
                sa.func.row_number().over(partition_by=tasks.c.type, order_by=d).label("k"),
                sa.func.count().over(partition_by=tasks.c.type).label("n"),
            )
            .where(*where)
            .subquery()
        )
        k, n = ranked.c.k, ranked.c.n
        wanted = sa.or_(*[sa.and_(100 * k >= p * n, 100 * (k - 1) < p * n) for p in PERCENTILES])
        for row in (await conn.execute(sa.select(ranked.c.type, ranked.c.d, k, n).where(wanted))).all():
            entry = found.setdefault(row.type, {"type": row.type, "count": row.n})
            for p in PERCENTILES:
                if 100 * row.k >= p * row.n > 100 * (row.k - 1):
                    entry[f"p{p}_seconds"] = _micros(row.d) / US
        return [found[t] for t in sorted(found)]

    async def _arrivals(
        self, conn: AsyncConnection, q: InsightsQuery, sqlite: bool, buckets: list[_Bucket]
    ) -> None:
        """Tasks created in the window, by bucket: a range of `ix_tasks_history`."""
        bucket = _bucket(tasks.c.created_at, q, sqlite).label("bucket")
        query = (
            sa.select(bucket, sa.func.count().label("n"))
            .where(tasks.c.created_at >= q.since, tasks.c.created_at < q.until, *self._filters(q))
            .group_by(bucket)
        )
        for row in (await conn.execute(query)).all():
            buckets[_index(row.bucket, q)].arrived += row.n

    def _left_queue_after(self, q: InsightsQuery) -> sa.Subquery:
        """Every task that may have left the queue at or after `since`: the active ones
        (`ix_tasks_active`) and those that finished since (`ix_tasks_finished`); a task that
        started at or after `since` is one or the other. Its `exit`: when it left the queue."""
        terminal = ", ".join(repr(s) for s in TERMINAL_VALUES)
        columns = (
            tasks.c.created_at,
            tasks.c.started_at,
            sa.func.coalesce(tasks.c.started_at, tasks.c.finished_at).label("exit"),
        )
        active = sa.select(*columns).where(sa.text(f"tasks.state NOT IN ({terminal})"), *self._filters(q))
        finished = sa.select(*columns).where(
            tasks.c.finished_at.is_not(None), tasks.c.finished_at >= q.since, *self._filters(q)
        )
        return sa.union_all(active, finished).subquery("recent")

    async def _queue(
        self, conn: AsyncConnection, q: InsightsQuery, sqlite: bool, buckets: list[_Bucket]
    ) -> int:
        """Tasks that left the queue in the window, by bucket, with their waits; answers how
        many were in the queue at `since` (created before it, not out of the queue by then).

        No WHERE on `exit` (an expression the planner cannot estimate, which made it sort
        instead of hash): rows outside the window fall in the NULL bucket."""
        recent = self._left_queue_after(q)
        exit_ = recent.c.exit
        inside = sa.and_(exit_ >= q.since, exit_ < q.until)
        bucket = sa.case((inside, _bucket(exit_, q, sqlite))).label("bucket")
        wait = _span(recent.c.started_at, recent.c.created_at, sqlite)
        queued_at_since = sa.and_(recent.c.created_at < q.since, sa.or_(exit_.is_(None), exit_ >= q.since))
        query = sa.select(
            bucket,
            sa.func.count().label("left"),
            sa.func.count(recent.c.started_at).label("started"),
            sa.func.sum(wait).label("wait_sum"),
            sa.func.max(wait).label("wait_max"),
            sa.func.sum(sa.case((queued_at_since, 1), else_=0)).label("initial"),
        ).group_by(bucket)
        initial = 0
        for row in (await conn.execute(query)).all():
            initial += int(row.initial or 0)
            if row.bucket is None:
                continue
            b = buckets[_index(row.bucket, q)]
            b.left, b.started = row.left, row.started
            if row.started:
                b.wait_sum_us, b.wait_max_us = _micros(row.wait_sum), _micros(row.wait_max)
        return initial
