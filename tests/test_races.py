"""Races that must come out right every time.

(a) Cancel against completion: 1,000 `demo.noop` tasks, each cancelled at a random
    moment while the real server runs them. Every task ends `completed` or
    `cancelled` (never `failed`: the late completion of a cancelled job is not an
    error), a terminal state is never left, every task's rows are a path of the
    table, and nothing is left running.
(b) Two claimers never run the same task (PostgreSQL, where claims really are
    concurrent): two stores on their own engines, then two live servers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import pytest

from taskstate.core.bus import EventBus
from taskstate.core.creation import NewTask
from taskstate.core.db import open_database
from taskstate.core.migrations import upgrade_to_head
from taskstate.core.store import Store
from tests import jobs as test_jobs
from tests.support.contract import assert_seqs_gap_free, assert_valid_paths
from tests.support.readers import read_database
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.waits import wait_idle

N_CANCEL_RACE = 1000
BATCH = 500


async def create_batches(server: LiveServer, bodies: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(bodies), BATCH):
        chunk = bodies[start : start + BATCH]
        response = await server.client.post("/api/v2/tasks/batch", json={"tasks": chunk})
        assert response.status_code == 201, response.text
        items = response.json()["items"]
        assert [t["name"] for t in items] == [b["name"] for b in chunk]
        ids.extend(t["id"] for t in items)
    assert len(set(ids)) == len(bodies)
    return ids


# -- (a) cancel against completion -------------------------------------------------------------


#: When a task's cancel is sent: a random 0-50 ms after its birth ("queued"); just before
#: its claim ("claim": when a task created a little earlier is claimed); or a random
#: 0-3 ms after it is seen entering preparing, running, collecting or completed.
CANCEL_MOMENTS = ["queued", "claim", "preparing", "running", "collecting", "completed"]


@pytest.mark.timeout(240)  # the server's throughput sets the pace; see the inner bounds
async def test_cancel_races_completion(database_url: str) -> None:
    """Each task is cancelled at a random moment of its life, however fast the server runs.

    The moments are found on the server's event bus, i.e. after the commit of the
    transition seen; the cancel then races the worker's next transitions.
    """
    rng = random.Random(20240601)
    moments = [rng.choice(CANCEL_MOMENTS) for _ in range(N_CANCEL_RACE)]
    # "claim": cancel task i when task i-k (same batch, claimed first) enters preparing.
    followers: dict[int, list[int]] = {}
    for i, moment in enumerate(moments):
        if moment == "claim":
            k = rng.randint(1, 8)
            leader = max(i - k, i - i % BATCH)
            if leader == i:
                moments[i] = "queued"
            else:
                followers.setdefault(leader, []).append(i)
    settings = make_settings(database_url, max_concurrent_tasks=20)
    async with live_server(settings) as server:
        answers: dict[str, tuple[int, dict[str, Any]]] = {}
        id_of: dict[int, str] = {}
        limit = asyncio.Semaphore(64)
        pending: set[asyncio.Task[None]] = set()

        async def cancel(task_id: str, delay: float) -> None:
            await asyncio.sleep(delay)
            async with limit:
                response = await server.client.post(f"/api/v2/tasks/{task_id}/cancel")
            assert task_id not in answers
            answers[task_id] = (response.status_code, response.json())

        def fire(task_id: str, delay: float) -> None:
            pending.add(asyncio.create_task(cancel(task_id, delay)))

        def on_event(event: Any) -> None:
            payload = event.payload
            name = (payload.get("task") or {}).get("name", "") if payload.get("type") == "transition" else ""
            if not name.startswith("race "):
                return
            index, to = int(name.removeprefix("race ")), payload["to"]
            if to == "queued":
                id_of[index] = payload["task_id"]
                if moments[index] == "queued":
                    fire(payload["task_id"], rng.uniform(0, 0.05))
                return
            if to == "preparing" or to in ("completed", "failed", "cancelled"):
                # (A leader that never gets claimed, being cancelled, lets its followers go when it ends.)
                for follower in followers.pop(index, []):
                    fire(id_of[follower], 0)
            if moments[index] == to:
                fire(payload["task_id"], rng.uniform(0, 0.003))

        server.services.store.bus.add_listener(on_event)
        # Half without hooks (their transitions share commits), half with: each its own.
        kinds = ["demo.noop", "test.hooked_noop"]
        bodies = [{"type": kinds[i % 2], "name": f"race {i}"} for i in range(N_CANCEL_RACE)]
        clock = time.monotonic()
        ids = await create_batches(server, bodies)
        timings = {"create": round(time.monotonic() - clock, 1)}
        assert [id_of[i] for i in range(N_CANCEL_RACE)] == ids

        async with asyncio.timeout(120):
            while len(answers) < N_CANCEL_RACE:
                if pending:
                    done, _ = await asyncio.wait(pending, timeout=1)
                    pending -= done
                    for task in done:
                        task.result()  # an exception here is a failed cancel
                else:
                    await asyncio.sleep(0.01)
        timings["cancels"] = round(time.monotonic() - clock, 1)
        await wait_idle([server], within=30)
        timings["idle"] = round(time.monotonic() - clock, 1)
        rows, tasks, latest = await read_database(database_url)

    # Every cancel was answered: 200 with the cancelled task, or 409 naming the terminal state it hit.
    statuses = Counter(status for status, _ in answers.values())
    assert set(statuses) <= {200, 409}, statuses
    assert set(answers) == set(ids)

    assert set(tasks) == set(ids)
    final = Counter(t["state"] for t in tasks.values())
    assert set(final) <= {"completed", "cancelled"}, f"final states {dict(final)}"
    for task_id, (status, body) in answers.items():
        state = tasks[task_id]["state"]
        if status == 200:
            assert body["state"] == "cancelled" and state == "cancelled", (task_id, body, state)
        else:
            assert body["error"] == "invalid_transition", body
            assert body["from"] == "completed" and state == "completed", (task_id, body, state)

    assert_seqs_gap_free(rows, latest)
    paths = assert_valid_paths(rows, {t: v["state"] for t, v in tasks.items()})
    for task_id, path in paths.items():
        if path[-1] == "completed":
            assert path == ["queued", "preparing", "running", "collecting", "completed"], (task_id, path)
    for index, task_id in enumerate(ids):
        if moments[index] == "completed":  # cancelled after it was seen completed: a 409, nothing moved
            assert paths[task_id][-1] == "completed"
            assert answers[task_id][0] == 409
    # Where the cancels landed (the interesting ones hit a task while a worker held it).
    hit = Counter(path[-2] for path in paths.values() if path[-1] == "cancelled")
    claim_moment = Counter(paths[ids[i]][-2] for i, m in enumerate(moments) if m == "claim")
    print(
        f"\n{database_url.split(':')[0]}: {dict(final)}, cancels hit {dict(hit)}, "
        f"answers {dict(statuses)}, claim-time cancels ended after {dict(claim_moment)}, "
        f"timings {timings}"
    )
    assert final["cancelled"] > 0 and final["completed"] > 0
    held = sum(hit[s] for s in ("preparing", "running", "collecting"))
    assert held >= 50, f"too few cancels hit a task a worker held: {dict(hit)}"


# -- (b) two claimers --------------------------------------------------------------------------


async def test_two_stores_never_claim_the_same_task(pg_url: str) -> None:
    dbs = [open_database(pg_url), open_database(pg_url)]
    await upgrade_to_head(dbs[0].writer)
    stores = [Store(db, EventBus()) for db in dbs]
    for store in stores:
        store.start()
    try:
        created = await stores[0].create_tasks(
            [NewTask(type="demo.noop", params={}, name=f"claim {i}") for i in range(500)], actor="test"
        )
        ids = {c.task["id"] for c in created}
        claimed: list[list[str]] = [[], []]

        async def claimer(n: int, lane: int) -> None:
            rng = random.Random(n * 10 + lane)
            store = stores[n]
            empty = 0
            while empty < 3:
                rows = await store.claim(f"claimer-{n}", rng.randint(1, 12))
                for row in rows:
                    assert row["state"] == "preparing" and row["worker_id"] == f"claimer-{n}"
                claimed[n].extend(r["id"] for r in rows)
                empty = empty + 1 if not rows else 0
                await asyncio.sleep(rng.choice([0, 0, 0.001]))

        async with asyncio.timeout(60):
            # Two lanes per store: a store batches its own claims, two stores race in the database.
            await asyncio.gather(*(claimer(n, lane) for n in (0, 1) for lane in (0, 1)))

        a, b = set(claimed[0]), set(claimed[1])
        assert len(a) == len(claimed[0]) and len(b) == len(claimed[1]), "one claimer got a task twice"
        assert not a & b, f"{len(a & b)} tasks claimed by both"
        assert a | b == ids
        assert a and b, f"one claimer got nothing ({len(a)}, {len(b)}): the race did not happen"

        rows, tasks, latest = await read_database(pg_url)
        assert_seqs_gap_free(rows, latest)
        assert_valid_paths(rows, {t: v["state"] for t, v in tasks.items()})
        for task_id, task in tasks.items():
            assert task["state"] == "preparing"
            assert task["worker_id"] == ("claimer-0" if task_id in a else "claimer-1")
        claim_rows = Counter(r["task_id"] for r in rows if r["to_state"] == "preparing")
        assert set(claim_rows.values()) == {1} and set(claim_rows) == ids
    finally:
        for store, db in zip(stores, dbs, strict=True):
            await store.close()
            await db.dispose()


async def test_two_servers_run_each_task_exactly_once(pg_url: str) -> None:
    settings = make_settings(pg_url, max_concurrent_tasks=10, poll_seconds=0.1)
    async with live_server(settings) as one, live_server(settings) as two:
        workers = {one.services.supervisor.worker_id, two.services.supervisor.worker_id}
        assert len(workers) == 2
        # Half the tasks submitted through each server: both claimers have local work to race for.
        bodies = [{"type": "test.record", "name": f"once {i}", "params": {"i": i}} for i in range(300)]
        ids = await create_batches(one, bodies[:150]) + await create_batches(two, bodies[150:])
        await wait_idle([one, two], within=45)
        rows, tasks, latest = await read_database(pg_url)

    runs = Counter(task_id for task_id, _attempt in test_jobs.RUNS)
    assert set(runs) == set(ids), f"{len(set(ids) - set(runs))} tasks never ran"
    twice = {t: n for t, n in runs.items() if n != 1}
    assert not twice, f"{len(twice)} tasks ran more than once: {list(twice.items())[:5]}"
    assert all(attempt == 1 for _, attempt in test_jobs.RUNS)

    assert Counter(t["state"] for t in tasks.values()) == {"completed": 300}
    assert_seqs_gap_free(rows, latest)
    paths = assert_valid_paths(rows, {t: v["state"] for t, v in tasks.items()})
    assert all(p == ["queued", "preparing", "running", "collecting", "completed"] for p in paths.values())
    # Each task was claimed once, and moved only by the worker that claimed it.
    by_worker: Counter[str] = Counter()
    for task_id in ids:
        actors = {r["actor"] for r in rows if r["task_id"] == task_id and r["from_state"] is not None}
        assert len(actors) == 1, (task_id, actors)
        [actor] = actors
        assert actor.removeprefix("worker:") in workers
        assert tasks[task_id]["worker_id"] == actor.removeprefix("worker:")
        by_worker[actor] += 1
    assert len(by_worker) == 2, f"only one server ran tasks: {dict(by_worker)}"
