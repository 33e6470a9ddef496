"""`GET /api/v2/insights` against a live server on both engines: jobs of several types run
side by side (some complete, some fail, some are cancelled running or queued, one stays
queued), and every bucket, count, percentile and queue figure the endpoint answers is
compared with the same figure computed here from the tasks' own timestamps."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from taskstate.core.db import tasks
from taskstate.core.insights import EPOCH, epoch_micros
from taskstate.web import auth
from tests import jobs as test_jobs
from tests.support.servers import LiveServer, live_server, make_settings

US = 1_000_000
TERMINAL = ("completed", "failed", "cancelled")


def micros(text: str | None) -> int | None:
    return epoch_micros(datetime.fromisoformat(text)) if text else None


def at(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def expected(tasks: list[dict[str, Any]], since: int, until: int, step: int) -> dict[str, Any]:
    """The insights of `[since, until)` (microseconds, aligned) computed from the tasks alone,
    by the definitions (not by the endpoint's method)."""
    step_us = step * US
    edges = list(range(since, until, step_us))
    rows = [
        {
            "type": t["type"],
            "state": t["state"],
            "created": micros(t["created_at"]),
            "started": micros(t["started_at"]),
            "finished": micros(t["finished_at"]),
        }
        for t in tasks
    ]
    for r in rows:
        r["exit"] = r["started"] if r["started"] is not None else r["finished"]

    def inside(value: int | None, lo: int, hi: int) -> bool:
        return value is not None and lo <= value < hi

    throughput = []
    queue = []
    for lo in edges:
        hi = lo + step_us
        done = Counter(r["state"] for r in rows if inside(r["finished"], lo, hi))
        throughput.append({"start": at(lo), **{s: done[s] for s in TERMINAL}})
        waits = [r["started"] - r["created"] for r in rows if inside(r["started"], lo, hi)]
        queue.append(
            {
                "start": at(lo),
                "depth": sum(1 for r in rows if r["created"] < hi and (r["exit"] is None or r["exit"] >= hi)),
                "arrived": sum(1 for r in rows if inside(r["created"], lo, hi)),
                "started": len(waits),
                "wait_avg_seconds": sum(waits) / len(waits) / US if waits else None,
                "wait_max_seconds": max(waits) / US if waits else None,
            }
        )
    finished = [r for r in rows if inside(r["finished"], since, until)]
    by_type = [
        {"type": t, **{s: sum(1 for r in finished if r["type"] == t and r["state"] == s) for s in TERMINAL}}
        for t in sorted({r["type"] for r in finished})
    ]
    durations = []
    for t in sorted({r["type"] for r in finished if r["started"] is not None}):
        spans = sorted(
            r["finished"] - r["started"] for r in finished if r["type"] == t and r["started"] is not None
        )
        entry: dict[str, Any] = {"type": t, "count": len(spans)}
        for p in (50, 95, 99):
            entry[f"p{p}_seconds"] = spans[math.ceil(p * len(spans) / 100) - 1] / US
        durations.append(entry)
    return {
        "since": at(since),
        "until": at(until),
        "interval_seconds": step,
        "throughput": throughput,
        "by_type": by_type,
        "durations": durations,
        "queue": queue,
    }


async def insights(server: LiveServer, **params: Any) -> dict[str, Any]:
    response = await server.client.get("/api/v2/insights", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def same(answer: dict[str, Any], want: dict[str, Any]) -> None:
    """Equal, with floats compared to the microsecond (they are integer microseconds / 1e6,
    but a mean may differ in its last bit)."""
    for key, value in want.items():
        got = answer[key]
        if key == "queue":
            assert len(got) == len(value)
            for g, w in zip(got, value, strict=True):
                for field in ("start", "depth", "arrived", "started", "wait_max_seconds"):
                    assert g[field] == w[field], (field, g, w)
                if w["wait_avg_seconds"] is None:
                    assert g["wait_avg_seconds"] is None
                else:
                    assert g["wait_avg_seconds"] == pytest.approx(w["wait_avg_seconds"], abs=1e-6)
        else:
            assert got == value, key


@pytest.fixture
async def busy(database_url: str) -> AsyncIterator[LiveServer]:
    """A server with two slots, so that tasks wait in the queue."""
    async with live_server(make_settings(database_url, max_concurrent_tasks=2)) as server:
        yield server


async def test_insights_match_what_ran(busy: LiveServer) -> None:
    server = busy
    # Two gated jobs hold one slot each for a while: the others queue behind them.
    gated = [await server.create("test.gate", params={"gate": f"g{i}"}) for i in range(2)]
    for task in gated:
        await server.wait_for(task["id"], "running")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    sleepers = [server.create("demo.sleep", params={"seconds": 0.05 * (i + 1), "steps": 1}) for i in range(6)]
    failures = [server.create("demo.fail", params={"message": f"no {i}"}, max_attempts=1) for i in range(4)]
    waiting = [server.create("demo.noop", run_at=later) for _ in range(2)]
    created = await asyncio.gather(*sleepers, *failures, *waiting)
    # One waiting task is cancelled while queued (it never starts); the other stays queued.
    cancelled_queued = (await server.client.post(f"/api/v2/tasks/{created[-1]['id']}/cancel")).json()
    assert cancelled_queued["state"] == "cancelled"
    await asyncio.sleep(0.3)  # the others wait in the queue meanwhile
    test_jobs.GATES["g0"].set()  # the first gate ends completed, freeing a slot for the rest
    ran = [t["id"] for t in created[:10]]
    await asyncio.gather(
        *(server.wait_for(i, *TERMINAL) for i in ran), server.wait_for(gated[0]["id"], *TERMINAL)
    )
    # The second gate is cancelled while running.
    assert (await server.client.post(f"/api/v2/tasks/{gated[1]['id']}/cancel")).status_code == 200
    await server.wait_for(gated[1]["id"], "cancelled")

    tasks = [await server.get(t["id"]) for t in [*gated, *created]]
    states = Counter((t["type"], t["state"]) for t in tasks)
    assert states == {
        ("test.gate", "completed"): 1,
        ("test.gate", "cancelled"): 1,
        ("demo.sleep", "completed"): 6,
        ("demo.fail", "failed"): 4,
        ("demo.noop", "cancelled"): 1,
        ("demo.noop", "queued"): 1,
    }
    assert any(t["started_at"] and micros(t["started_at"]) - micros(t["created_at"]) > 300_000 for t in tasks)

    instants = [micros(t[k]) for t in tasks for k in ("created_at", "finished_at") if t[k]]
    since = (min(instants) // US - 2) * US
    until = (max(instants) // US + 3) * US
    answer = await insights(server, since=at(since), until=at(until), interval="1s")
    want = expected(tasks, since, until, 1)
    same(answer, want)
    assert sum(b["failed"] for b in answer["throughput"]) == 4
    assert [b["type"] for b in answer["by_type"]] == ["demo.fail", "demo.noop", "demo.sleep", "test.gate"]
    # The queued task (and nothing else) is still in the queue at the end.
    assert answer["queue"][-1]["depth"] == 1
    assert max(b["depth"] for b in answer["queue"]) >= 3

    # A window that starts in the middle of things: the depth it starts from is counted.
    middle = (min(micros(t["finished_at"]) for t in tasks if t["finished_at"]) // US) * US
    same(
        await insights(server, since=at(middle), until=at(until), interval="1s"),
        expected(tasks, middle, until, 1),
    )
    # Two-second buckets, aligned to even seconds since the epoch.
    even, even_end = since // (2 * US) * (2 * US), -(-until // (2 * US)) * (2 * US)
    same(
        await insights(server, since=at(since), until=at(until), interval="2s"),
        expected(tasks, even, even_end, 2),
    )
    # One type.
    sleeps = [t for t in tasks if t["type"] == "demo.sleep"]
    typed = await insights(server, since=at(since), until=at(until), interval="1s", type="demo.sleep")
    assert typed["type"] == "demo.sleep"
    same(typed, expected(sleeps, since, until, 1))
    assert typed["durations"][0]["count"] == 6
    assert typed["durations"][0]["p50_seconds"] >= 0.15  # the third of 0.05 .. 0.3 s
    # The default window: the last 24 hours, in at most 120 buckets, holds all of it.
    default = await insights(server)
    assert default["interval_seconds"] == 900 and len(default["throughput"]) in (96, 97)
    assert default["by_type"] == want["by_type"] and default["durations"] == want["durations"]
    assert (await insights(server, window="1h"))["interval_seconds"] == 30
    test_jobs.GATES["g1"].set()


async def test_an_instant_in_the_last_half_millisecond_of_a_second_stays_in_its_second(
    server: LiveServer,
) -> None:
    """SQLite's date functions round to the millisecond: `strftime('%s', '… 22:13:34.9996')`
    is 22:13:35, so a task finished then was counted a second late (seen in CI). Tasks
    finished at .9995, .999999 and .000000 of one second all count in that second."""
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    second = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    finishes = [second.replace(microsecond=us) for us in (999_500, 999_999, 0)]
    ids = []
    for _ in finishes:
        task = await server.create("demo.noop", run_at=later)
        assert (await server.client.post(f"/api/v2/tasks/{task['id']}/cancel")).status_code == 200
        ids.append(task["id"])
    async with server.services.store.db.writer.begin() as conn:
        for task_id, finished in zip(ids, finishes, strict=True):
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id)
                .values(created_at=finished - timedelta(seconds=1), finished_at=finished)
            )
    for task_id, finished in zip(ids, finishes, strict=True):
        assert (await server.get(task_id))["finished_at"] == at(epoch_micros(finished))
    since = epoch_micros(second) - 3 * US
    window = {"since": at(since), "until": at(since + 6 * US), "interval": "1s"}
    answer = await insights(server, **window, type="demo.noop")
    assert [b["cancelled"] for b in answer["throughput"]] == [0, 0, 0, 3, 0, 0]
    assert [b["depth"] for b in answer["queue"]] == [0, 0, 3, 0, 0, 0]  # created the second before


BAD = [
    {"window": "soon"},
    {"window": "0s"},
    {"window": "-5m"},
    {"window": "32d"},
    {"window": "9999999d"},
    {"interval": "0"},
    {"interval": "1.5s"},
    {"interval": "1s", "window": "2d"},
    {"interval": "40d"},
    {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    {"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
    {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "window": "1h"},
    {"since": "0001-01-01T00:00:00Z", "window": "1h"},
    {"since": "1960-01-01T00:00:00Z", "window": "1h"},
    {"until": "9999-12-31T23:59:59Z"},
    {"since": "9999-12-31T23:00:00Z", "window": "2h"},
    {"since": "yesterday"},
    {"type": "a\x00b"},
    {"type": "x" * 201},
    {"window": "1" * 30},
]


async def test_hostile_queries_are_422(server: LiveServer) -> None:
    for params in BAD:
        response = await server.client.get("/api/v2/insights", params=params)
        assert response.status_code == 422, (params, response.status_code, response.text)
        body = response.json()
        assert body["error"] == "validation_error" and body["detail"], params


async def test_a_token_sees_the_insights_of_its_own_tasks(database_url: str) -> None:
    async with live_server(make_settings(database_url, auth="tokens")) as server:
        tokens = {}
        for name, role in (("alice", "operator"), ("bob", "operator"), ("root", "admin")):
            _, tokens[name] = await auth.create_token(server.services.store, name, auth.Role(role))
        server.client.headers["Authorization"] = f"Bearer {tokens['root']}"  # for wait_for
        for name, count in (("alice", 2), ("bob", 3)):
            for _ in range(count):
                response = await server.client.post(
                    "/api/v2/tasks",
                    json={"type": "demo.noop"},
                    headers={"Authorization": f"Bearer {tokens[name]}"},
                )
                await server.wait_for(response.json()["id"], "completed")

        async def completed(name: str) -> int:
            response = await server.client.get(
                "/api/v2/insights",
                params={"window": "1h"},
                headers={"Authorization": f"Bearer {tokens[name]}"},
            )
            assert response.status_code == 200, response.text
            return sum(b["completed"] for b in response.json()["throughput"])

        assert (await completed("alice"), await completed("bob"), await completed("root")) == (2, 3, 5)
        del server.client.headers["Authorization"]
        assert (await server.client.get("/api/v2/insights")).status_code == 401
