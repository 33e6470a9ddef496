"""No transition is published before its commit: connections killed mid-batch lose nothing
that anyone was told about."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa

from taskstate.core.creation import NewTask
from taskstate.core.db import transitions
from taskstate.core.maintenance import TableStatistics
from taskstate.core.states import State
from taskstate.core.store import Store
from tests.support.databases import database_name, open_store, pg_dsn, terminate_connections
from tests.support.servers import live_server, make_settings
from tests.support.waits import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    async with open_store(pg_url) as store:
        yield store


async def test_killing_the_database_connections_mid_batch_never_loses_a_published_transition(
    store: Store, pg_url: str
) -> None:
    published: list[tuple[int, str, str]] = []
    subscription = store.bus.subscribe(maxsize=1_000_000)
    stop = asyncio.Event()
    failures = 0
    successes = 0

    async def write() -> None:
        nonlocal failures, successes
        while not stop.is_set():
            try:
                created = await store.create_tasks(
                    [NewTask(type="demo.noop", params={}, name="d") for _ in range(random.randint(1, 8))],
                    actor="t",
                )
                for result in created:
                    await store.transition(result.task["id"], State.CANCELLED, reason="t", actor="t")
                successes += 1
            except Exception:
                failures += 1
                await asyncio.sleep(0.01)

    async def collect() -> None:
        while True:
            event = await subscription.get()
            if event.seq is not None:
                published.append((event.seq, event.task_id, event.payload["to"]))

    database = database_name(pg_url)
    collector = asyncio.create_task(collect())
    writers = [asyncio.create_task(write()) for _ in range(6)]
    try:
        for _ in range(15):
            await asyncio.sleep(random.uniform(0.02, 0.15))
            await terminate_connections(database)
        await asyncio.sleep(0.3)  # the writers go on a moment after the last blow
    finally:
        stop.set()
        await asyncio.gather(*writers)
    # Until the feed has delivered what was committed last.
    committed = await store.reads.latest_seq()
    await wait_until(lambda: bool(published) and published[-1][0] >= committed, f"seq {committed} published")
    collector.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await collector

    async with store.db.reader.connect() as conn:
        rows = {
            (r.seq, r.task_id, r.to_state)
            for r in (
                await conn.execute(
                    sa.select(transitions.c.seq, transitions.c.task_id, transitions.c.to_state)
                )
            )
        }
    # Interrupted transactions are retried (a batch's ops one by one, on a new connection),
    # so callers rarely see the failure; the writer counts them.
    interrupted = store.failed_write_transactions
    assert interrupted > 0, "no write was interrupted: the test proved nothing"
    assert successes > 0
    missing = [p for p in published if p not in rows]
    assert not missing, f"published but never committed: {missing[:5]}"
    seqs = [p[0] for p in published]
    assert seqs == sorted(set(seqs)), "published out of order or twice"
    # And nothing committed was skipped by the bus.
    assert seqs == sorted(r[0] for r in rows)[: len(seqs)]


async def test_a_lost_database_connection_answers_503_once_then_the_service_goes_on(pg_url: str) -> None:
    """Without a pre-ping, a connection PostgreSQL dropped fails on its next use: the API
    must say `unavailable` (503, retry), never 500, and both reads and writes recover."""
    async with live_server(make_settings(pg_url)) as server:
        first = await server.create("demo.noop")
        await server.wait_for(first["id"], "completed")
        for _ in range(5):  # fill the reader pool with connections that will go stale
            await asyncio.gather(*(server.client.get(f"/api/v2/tasks/{first['id']}") for _ in range(5)))
        killed = await terminate_connections(database_name(pg_url))
        assert killed >= 2
        answers = [await server.client.get(f"/api/v2/tasks/{first['id']}") for _ in range(8)]
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 503}, codes
        assert codes[-1] == 200, codes
        for answer in answers:
            if answer.status_code == 503:
                assert answer.json()["error"] == "unavailable"
                assert answer.headers["retry-after"] == "1"
        second = await server.create("demo.noop")  # the writer's connection was dropped too
        done = await server.wait_for(second["id"], timeout=30)
        assert done["state"] == "completed"


async def test_a_changed_tasks_table_is_analysed_at_most_once_a_minute(pg_url: str) -> None:
    async with open_store(pg_url) as store:
        statistics = TableStatistics(store.db)
        assert not await statistics.refresh()  # a new, empty table: nothing to do
        await store.create_tasks(
            [NewTask(type="demo.noop", params={}, name="n") for _ in range(1500)], actor="t"
        )
        admin = await asyncpg.connect(pg_dsn(database_name(pg_url)))
        try:
            for _ in range(150):  # an idle backend reports its counts within 10 s (PGSTAT_IDLE_INTERVAL)
                if await admin.fetchval(
                    "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'tasks'"
                ):
                    break
                await asyncio.sleep(0.1)
            assert await statistics.refresh()
            analysed = await admin.fetchval(
                "SELECT last_analyze IS NOT NULL AND n_mod_since_analyze = 0 FROM pg_stat_user_tables "
                "WHERE relname = 'tasks'"
            )
            assert analysed
            await store.create_tasks(
                [NewTask(type="demo.noop", params={}, name="n") for _ in range(3000)], actor="t"
            )
            await asyncio.sleep(1)
            assert not await statistics.refresh()  # changed enough, but analysed a moment ago
        finally:
            await admin.close()
