"""The WebSocket `/api/v2/events` (CONTRACT §3), against a real server on both backends.

Every test talks to a real uvicorn through real `websockets` clients and checks
what it hears against what the database recorded (the transitions endpoint, or
the transitions table itself). Every receive is bounded by `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests import jobs as test_jobs
from tests.support.readers import table_seqs
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.waits import wait_idle

Message = dict[str, Any]

RECV_TIMEOUT = 10.0
TRANSITION_FIELDS = {"type", "seq", "task_id", "from", "to", "at", "reason", "task"}
PROGRESS_FIELDS = {"type", "task_id", "progress", "phase", "message", "items_processed", "items_failed"}
LIVE_TYPES = {"transition", "progress", "log", "question"}
NOOP_PAIRS = [
    (None, "queued"),
    ("queued", "preparing"),
    ("preparing", "running"),
    ("running", "collecting"),
    ("collecting", "completed"),
]


# -- helpers ------------------------------------------------------------------------------


def url(server: LiveServer, query: str = "") -> str:
    return f"{server.ws_url}?{query}" if query else server.ws_url


async def recv(ws: ClientConnection, within: float = RECV_TIMEOUT) -> Message:
    async with asyncio.timeout(within):
        raw = await ws.recv()
    assert isinstance(raw, str), f"the server sent a binary frame: {raw!r}"
    message = json.loads(raw)
    assert isinstance(message, dict), raw
    return message


async def recv_until(
    ws: ClientConnection, done: Callable[[Message], bool], within: float = 15.0
) -> list[Message]:
    """Every message up to and including the first one for which `done` is true."""
    received: list[Message] = []
    async with asyncio.timeout(within):
        while True:
            message = await recv(ws, within)
            received.append(message)
            if done(message):
                return received


def completes(task_id: str) -> Callable[[Message], bool]:
    return lambda m: m.get("type") == "transition" and m["task_id"] == task_id and m["to"] == "completed"


def only_transitions(messages: Iterable[Message]) -> list[Message]:
    return [m for m in messages if m["type"] == "transition"]


def as_rows(events: Iterable[Message]) -> list[tuple[Any, ...]]:
    return [(e["seq"], e["task_id"], e["from"], e["to"], e["reason"], _instant(e["at"])) for e in events]


def db_rows(rows: Iterable[Message]) -> list[tuple[Any, ...]]:
    return [
        (r["seq"], r["task_id"], r["from_state"], r["to_state"], r["reason"], _instant(r["at"])) for r in rows
    ]


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def assert_strictly_increasing(seqs: list[int]) -> None:
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs


def assert_transition_shape(event: Message, *, live: bool) -> None:
    assert TRANSITION_FIELDS <= set(event), event
    assert isinstance(event["seq"], int) and event["seq"] >= 1
    assert isinstance(event["task_id"], str)
    assert event["from"] is None or isinstance(event["from"], str)
    assert isinstance(event["to"], str)
    _instant(event["at"])
    assert isinstance(event["task"], dict)
    assert event["task"]["id"] == event["task_id"]
    if live:  # the task as it is right after this transition
        assert event["task"]["state"] == event["to"], event


async def rows_of(server: LiveServer, task_ids: Iterable[str]) -> list[Message]:
    """Every transition row of these tasks, from the per-task endpoint, in `seq` order."""
    gate = asyncio.Semaphore(8)

    async def one(task_id: str) -> list[Message]:
        async with gate:
            return await server.transitions(task_id)

    per_task = await asyncio.gather(*(one(t) for t in task_ids))
    return sorted((r for rows in per_task for r in rows), key=lambda r: r["seq"])


async def snapshot_of(ws: ClientConnection) -> Message:
    first = await recv(ws)
    assert first["type"] == "snapshot", first
    assert isinstance(first["seq"], int)
    assert isinstance(first["tasks"], list)
    return first


async def assert_closed(ws: ClientConnection, code: int | None = None) -> None:
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(RECV_TIMEOUT):
            while True:
                await ws.recv()
    if code is not None:
        assert ws.close_code == code, (ws.close_code, ws.close_reason)


# -- snapshot, then live ------------------------------------------------------------------


async def test_snapshot_then_live_transitions(server: LiveServer) -> None:
    waiting = await server.create("test.gate", params={"gate": "snapshot"}, name="waiting")
    await server.wait_for(waiting["id"], "running")
    finished = await server.create("demo.noop")
    await server.wait_for(finished["id"])
    newest = max(r["seq"] for r in await rows_of(server, [waiting["id"], finished["id"]]))

    async with connect(url(server)) as ws:
        snapshot = await snapshot_of(ws)
        assert snapshot["seq"] == newest
        # Only the active task: the finished one is history, not state.
        assert [t["id"] for t in snapshot["tasks"]] == [waiting["id"]]
        assert snapshot["tasks"][0]["state"] == "running"

        later = await server.create("demo.noop")
        messages = await recv_until(ws, completes(later["id"]))
        test_jobs.GATES["snapshot"].set()
        messages += await recv_until(ws, completes(waiting["id"]))

    assert {m["type"] for m in messages} <= LIVE_TYPES
    events = only_transitions(messages)
    for event in events:
        assert_transition_shape(event, live=True)
    assert_strictly_increasing([e["seq"] for e in events])
    rows = await rows_of(server, [waiting["id"], finished["id"], later["id"]])
    assert as_rows(events) == db_rows(r for r in rows if r["seq"] > newest)
    assert [e["seq"] for e in events] == list(range(newest + 1, rows[-1]["seq"] + 1))


async def test_a_noop_seen_live_is_exactly_its_five_transitions(server: LiveServer) -> None:
    async with connect(url(server)) as ws:
        snapshot = await snapshot_of(ws)
        assert (snapshot["seq"], snapshot["tasks"]) == (0, [])  # a fresh database
        noop = await server.create("demo.noop")
        messages = await recv_until(ws, completes(noop["id"]))
        # A second task: anything late or doubled for the first would show up before it ends.
        other = await server.create("demo.noop")
        messages += await recv_until(ws, completes(other["id"]))

    events = only_transitions(messages)
    for event in events:
        assert_transition_shape(event, live=True)
    assert [e["seq"] for e in events] == list(range(1, 11))
    mine = [m for m in events if m["task_id"] == noop["id"]]
    assert [(m["from"], m["to"]) for m in mine] == NOOP_PAIRS
    assert as_rows(mine) == db_rows(await server.transitions(noop["id"]))
    assert [m["task"]["state"] for m in mine] == [to for _, to in NOOP_PAIRS]


# -- a snapshot larger than a client's frame limit ---------------------------------------


async def test_a_snapshot_of_10000_tasks_reaches_a_default_client_in_parts(database_url: str) -> None:
    """10,000 queued tasks are 9 MiB of JSON: in one message a default `websockets` client
    (1 MiB frames) closed with 1009. In parts, it gets every task, all of one seq, then live."""
    settings = make_settings(database_url, run_supervisor=False)
    async with live_server(settings) as server:
        created: set[str] = set()
        body = {"tasks": [{"type": "demo.noop", "params": {}} for _ in range(500)]}
        for _ in range(20):
            response = await server.client.post("/api/v2/tasks/batch", json=body)
            assert response.status_code == 201, response.text[:300]
            created.update(t["id"] for t in response.json()["items"])
        assert len(created) == 10_000
        active = await server.client.get("/api/v2/tasks/active")
        assert len(active.json()["items"]) == 10_000
        newest = active.json()["seq"]

        async with connect(server.ws_url) as ws:  # the library's defaults: max_size=2**20
            first = await recv(ws)
            assert (first["type"], first["seq"], first["part"]) == ("snapshot", newest, 1), {
                k: v for k, v in first.items() if k != "tasks"
            }
            parts, tasks = first["parts"], list(first["tasks"])
            assert parts > 1
            sizes = []
            for number in range(2, parts + 1):
                async with asyncio.timeout(RECV_TIMEOUT):
                    raw = await ws.recv()
                assert isinstance(raw, str)
                sizes.append(len(raw))
                part = json.loads(raw)
                assert (part["type"], part["seq"], part["part"], part["parts"]) == (
                    "snapshot_part",
                    newest,
                    number,
                    parts,
                )
                tasks += part["tasks"]
            assert max(sizes) <= 256 * 1024 + 200, sizes  # the part budget, plus the envelope
            assert len(tasks) == 10_000 and {t["id"] for t in tasks} == created
            assert all(t["state"] == "queued" for t in tasks)

            task = await server.create("demo.noop")
            live = await recv(ws)
            assert (live["type"], live["seq"], live["task_id"]) == ("transition", newest + 1, task["id"])
        documented = (await server.client.get("/openapi.json")).json()["info"]["description"]
        assert '"type": "snapshot_part"' in documented


# -- since: replay, then live -------------------------------------------------------------


async def test_since_replays_then_goes_live_without_gap_or_duplicate(server: LiveServer) -> None:
    before = [await server.create("demo.noop") for _ in range(4)]
    for task in before:
        await server.wait_for(task["id"])
    since = (await rows_of(server, [t["id"] for t in before]))[7]["seq"]

    created: list[str] = [t["id"] for t in before]

    async def produce() -> None:
        # Transitions keep committing while the subscriber joins replay and live.
        for _ in range(12):
            created.append((await server.create("demo.noop"))["id"])
            await asyncio.sleep(0.01)

    received: list[Message] = []
    async with connect(url(server, f"since={since}")) as ws:
        producer = asyncio.create_task(produce())
        received.append(await recv(ws))
        async with asyncio.timeout(20):
            await producer
            for task_id in created:
                await server.wait_for(task_id)
        expected = [r for r in await rows_of(server, created) if r["seq"] > since]
        async with asyncio.timeout(RECV_TIMEOUT):
            while received[-1].get("seq") != expected[-1]["seq"]:
                received.append(await recv(ws))
        # Nothing more, nothing doubled after the last transition.
        with pytest.raises(TimeoutError):
            received.append(await recv(ws, within=0.3))

    assert received[0]["type"] == "transition" and received[0]["seq"] == since + 1
    assert {m["type"] for m in received} == {"transition"}
    for event in received:
        assert_transition_shape(event, live=False)
    assert_strictly_increasing([m["seq"] for m in received])
    assert as_rows(received) == db_rows(expected)
    assert [m["seq"] for m in received] == list(range(since + 1, expected[-1]["seq"] + 1))

    # `since` the newest seq: nothing to replay (and no snapshot), then live.
    newest = expected[-1]["seq"]
    async with connect(url(server, f"since={newest}")) as ws:
        with pytest.raises(TimeoutError):
            await recv(ws, within=0.3)
        last = await server.create("demo.noop")
        messages = await recv_until(ws, completes(last["id"]))
    assert as_rows(messages) == db_rows(await server.transitions(last["id"]))
    assert messages[0]["seq"] == newest + 1


async def test_reconnecting_with_the_last_seq_misses_nothing_and_sees_nothing_twice(
    server: LiveServer,
) -> None:
    stop = asyncio.Event()
    created: list[str] = []

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        # Under load a keep-alive connection was once closed as a request went out (ReadError),
        # and the producer died. The request goes again with the same idempotency keys, as a
        # careful client sends it: its tasks exist once either way, and `created` names them.
        for attempt in range(5):
            try:
                response = await server.client.post(path, json=body)
            except httpx.TransportError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.1)
                continue
            assert response.status_code in (200, 201), response.text
            answer: dict[str, Any] = response.json()
            return answer
        raise AssertionError("unreachable")

    async def produce() -> None:
        # Paced (not flat out), so the amount of work follows the test's duration.
        while not stop.is_set():
            key = f"producer-{len(created)}"
            if len(created) % 5 == 4:
                tasks = [{"type": "demo.noop", "idempotency_key": f"{key}-{i}"} for i in range(3)]
                answer = await post("/api/v2/tasks/batch", {"tasks": tasks})
                created.extend(t["id"] for t in answer["items"])
            else:
                created.append(
                    (await post("/api/v2/tasks", {"type": "demo.noop", "idempotency_key": key}))["id"]
                )
            await asyncio.sleep(0.02)

    producer = asyncio.create_task(produce())
    seen: list[int] = []
    last = 0
    try:
        for attempt in range(20):
            async with connect(url(server, f"since={last}")) as ws:
                for _ in range(1 + (attempt * 7) % 11):
                    event = await recv(ws)
                    assert event["type"] == "transition", event
                    seen.append(event["seq"])
                    last = event["seq"]
                if attempt % 3 == 2:
                    ws.transport.abort()  # a dropped connection, not a polite close
        assert not producer.done()  # tasks were transitioning all along
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await producer
    await wait_idle([server])

    table = await table_seqs(server.services.store.db)
    newest = table[-1]
    async with connect(url(server, f"since={last}")) as ws:
        async with asyncio.timeout(15):
            while last < newest:
                event = await recv(ws)
                assert event["type"] == "transition", event
                seen.append(event["seq"])
                last = event["seq"]
        with pytest.raises(TimeoutError):
            await recv(ws, within=0.3)

    assert table == list(range(1, newest + 1))
    assert len(created) >= 10
    assert [r["seq"] for r in await rows_of(server, created)] == table
    assert seen == table


# -- task_id filter -------------------------------------------------------------------------


async def test_task_id_filter_gets_only_that_tasks_events(server: LiveServer) -> None:
    mine = await server.create("test.gate", params={"gate": "filter"})
    await server.wait_for(mine["id"], "running")
    noise = await server.create("demo.noop")
    await server.wait_for(noise["id"])
    newest = max(r["seq"] for r in await rows_of(server, [mine["id"], noise["id"]]))

    async with (
        connect(url(server, f"task_id={mine['id']}")) as live,
        connect(url(server, f"task_id={mine['id']}&since=0")) as replay,
    ):
        snapshot = await snapshot_of(live)
        assert snapshot["seq"] == newest
        assert [t["id"] for t in snapshot["tasks"]] == [mine["id"]]

        others = [await server.create("demo.noop") for _ in range(3)]
        for other in others:
            await server.wait_for(other["id"])
        test_jobs.GATES["filter"].set()
        live_messages = await recv_until(live, completes(mine["id"]))
        replayed = await recv_until(replay, completes(mine["id"]))

        late = await server.create("demo.noop")
        await server.wait_for(late["id"])
        for ws in (live, replay):
            with pytest.raises(TimeoutError):
                await recv(ws, within=0.3)

    rows = await server.transitions(mine["id"])
    assert {m["task_id"] for m in live_messages + replayed} == {mine["id"]}
    assert as_rows(replayed) == db_rows(rows)
    assert as_rows(only_transitions(live_messages)) == db_rows(r for r in rows if r["seq"] > newest)
    assert [m["to"] for m in only_transitions(live_messages)] == ["collecting", "completed"]

    # A finished task's snapshot: the newest seq, and no active task (or just that one, ended).
    async with connect(url(server, f"task_id={noise['id']}")) as ws:
        snapshot = await snapshot_of(ws)
    assert snapshot["seq"] == max(r["seq"] for r in await rows_of(server, [mine["id"], late["id"]]))
    assert [(t["id"], t["state"]) for t in snapshot["tasks"]] in ([], [(noise["id"], "completed")])


# -- progress -----------------------------------------------------------------------------------


async def test_progress_events_are_live_and_end_at_100(server: LiveServer) -> None:
    """Three jobs report progress as fast as they can, side by side: each task's events are
    its own, in order, and end at its own last report."""
    async with connect(url(server)) as ws:
        await snapshot_of(ws)
        ids = [(await server.create("test.progress", params={"updates": 1000}))["id"] for _ in range(3)]
        messages: list[dict[str, Any]] = []
        for task_id in ids:
            if not any(m.get("to") == "completed" and m["task_id"] == task_id for m in messages):
                messages += await recv_until(ws, completes(task_id))

    for task_id in ids:
        mine = [m for m in messages if m["task_id"] == task_id]
        progress = [m for m in mine if m["type"] == "progress"]
        assert progress, [m["type"] for m in mine]
        for event in progress:
            assert PROGRESS_FIELDS <= set(event), event
            assert "seq" not in event, event  # live only
            assert 0 <= event["progress"] <= 100
            assert isinstance(event["items_processed"], int) and isinstance(event["items_failed"], int)
        values = [e["progress"] for e in progress]
        assert values == sorted(values), values
        # The last progress heard before `completed` is the final one the job reported.
        order = [m["to"] if m["type"] == "transition" else m["type"] for m in mine]
        running, completed = order.index("running"), order.index("completed")
        last_before_completion = [m for m in mine[:completed] if m["type"] == "progress"][-1]
        assert last_before_completion["progress"] == 100
        assert last_before_completion["items_processed"] == 1000
        assert last_before_completion["message"] == "update 1000"
        assert last_before_completion["items_failed"] == 0
        # All progress arrives between the task's `running` and `completed`.
        assert all(kind != "progress" for kind in order[:running] + order[completed:]), order
        assert (await server.get(task_id))["progress"] == 100

    # Progress is not replayed: `since` gives transitions only.
    async with connect(url(server, "since=0")) as ws:
        replayed = await recv_until(ws, completes(ids[-1]))
    assert {m["type"] for m in replayed} == {"transition"}


# -- a slow subscriber ----------------------------------------------------------------------


async def test_slow_subscriber_is_resynced_and_others_are_not_held_up(database_url: str) -> None:
    async with live_server(make_settings(database_url, subscriber_queue_size=5)) as server:
        # A client that does not read: a tiny receive buffer, a one-frame client queue and no
        # compression, so the server's sends to it block soon and its backlog on the bus grows.
        address = urlsplit(server.base_url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (address.hostname, address.port))
        async with (
            connect(url(server), sock=sock, max_queue=1, compression=None, close_timeout=1) as slow,
            connect(url(server), max_size=None) as fast,
        ):
            fast_messages: list[Message] = [await snapshot_of(fast)]
            heard_all = asyncio.Event()

            async def read_fast() -> None:
                while True:
                    fast_messages.append(await recv(fast, within=30))
                    if len(fast_messages) == 251:
                        heard_all.set()

            reader = asyncio.create_task(read_fast())
            # 50 tasks of ~32 KB (incompressible) each: ~10 MB of events, more than the
            # loopback buffers between the server and `slow` hold.
            bodies = [{"type": "test.echo", "params": {"pad": secrets.token_hex(16_000)}} for _ in range(50)]
            response = await server.client.post("/api/v2/tasks/batch", json={"tasks": bodies})
            assert response.status_code == 201, response.text
            ids = [t["id"] for t in response.json()["items"]]
            # The service is not held up: every task ends while `slow` has read nothing.
            async with asyncio.timeout(30):
                for task_id in ids:
                    done = await server.wait_for(task_id, timeout=30)
                    assert done["state"] == "completed"
                # ... and the reading client hears every transition, in order.
                waiter = asyncio.ensure_future(heard_all.wait())
                await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if reader.done():
                reader.result()  # the reading client's connection ended: show why
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader

            heard = fast_messages[1:]
            assert {m["type"] for m in heard} == {"transition"}, [m["type"] for m in heard][-3:]
            assert [m["seq"] for m in heard] == list(range(1, 251))
            assert as_rows(heard) == db_rows(await rows_of(server, ids))
            assert fast.close_code is None
            # `slow` is already off the bus (only `fast` is left): its backlog is bounded.
            assert server.services.store.bus.subscriber_count == 1

            # The slow client, once it reads, finds its backlog cut short by a resync and a close.
            slow_messages: list[Message] = []
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(RECV_TIMEOUT):
                    while True:
                        slow_messages.append(json.loads(await slow.recv()))
            assert slow_messages[0]["type"] == "snapshot"
            assert slow_messages[-1] == {"type": "resync"}
            assert {m["type"] for m in slow_messages[1:-1]} <= {"transition"}
            assert len(slow_messages) - 2 < 250
            slow_seqs = [m["seq"] for m in slow_messages[1:-1]]
            assert slow_seqs == list(range(1, 1 + len(slow_seqs)))  # what it did get, it got in order

            # The fast one is still subscribed and still hears what follows.
            more = await server.create("demo.noop")
            tail = await recv_until(fast, completes(more["id"]))
            assert [m["seq"] for m in only_transitions(tail)] == list(range(251, 256))


# -- hostile clients -------------------------------------------------------------------------


BAD_QUERIES = [
    "since=-1",
    "since=abc",
    "since=",
    "since=1.5",
    "since=99999999999999999999999999",
    # Digits that are not ASCII: str.isdigit() took them (superscript 2 then crashed int();
    # Arabic-Indic 3 and fullwidth 1 were read as 3 and 1).
    "since=%C2%B2",
    "since=%D9%A3",
    "since=%EF%BC%91",
    "since=1%C2%B2",
    "since=%F0%9D%9F%97",
    # Ahead of the newest seq (0: this server has no transitions yet).
    "since=1",
    "task_id=not-a-uuid",
    "task_id=",
    "bogus=1",
    "since=0&bogus=1",
]


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of the server, uvicorn's too (its logger does not propagate to root)."""
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        uvicorn_log.removeHandler(caplog.handler)


def trouble(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server logged as an error, or as an event stream ending badly."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.name.startswith("taskstate.web.events")
    ]


async def test_bad_queries_get_a_validation_error_then_close_1008(
    server: LiveServer, server_log: pytest.LogCaptureFixture
) -> None:
    for query in BAD_QUERIES:
        async with connect(url(server, query)) as ws:
            message = await recv(ws)
            assert message["type"] == "error", (query, message)
            assert message["error"] == "validation_error", (query, message)
            assert isinstance(message.get("detail"), str) and message["detail"], (query, message)
            await assert_closed(ws, 1008)
    response = await server.client.get("/healthz")
    assert response.status_code == 200
    assert server.services.store.bus.subscriber_count == 0
    assert trouble(server_log) == []


async def test_since_ahead_of_the_newest_seq_is_refused(server: LiveServer) -> None:
    """A client can only have seen a committed seq; a subscriber with one from the future
    (another database, a reset) used to wait in silence for ever."""
    first = await server.create("demo.noop")
    await server.wait_for(first["id"])
    newest = (await server.transitions(first["id"]))[-1]["seq"]
    for ahead in (newest + 1, newest + 1000, 10**17):
        async with connect(url(server, f"since={ahead}")) as ws:
            message = await recv(ws)
            assert (message["type"], message["error"]) == ("error", "validation_error"), message
            assert message["detail"].startswith(f"since={ahead} is ahead of the newest seq {newest}")
            assert message["newest_seq"] == newest
            await assert_closed(ws, 1008)
    # At the newest seq exactly: nothing to replay, then live.
    async with connect(url(server, f"since={newest}")) as ws:
        task = await server.create("demo.noop")
        live = await recv_until(ws, completes(task["id"]))
        assert [m["seq"] for m in only_transitions(live)] == list(range(newest + 1, newest + 6))


async def test_garbage_from_clients_does_not_hurt_the_server(
    server: LiveServer, server_log: pytest.LogCaptureFixture
) -> None:
    async with connect(url(server)) as listener, connect(url(server)) as hostile:
        await snapshot_of(listener)
        await snapshot_of(hostile)

        # Garbage that is a valid frame is read and ignored; the subscription goes on.
        await hostile.send("not json at all {")
        await hostile.send(json.dumps({"type": "subscribe", "since": -5}))
        await hostile.send(b"\x00\xff\xfe binary garbage")
        await hostile.send(bytes(range(256)) * 100)
        for _ in range(200):
            await hostile.send("flood")
        first = await server.create("demo.noop")
        heard = await recv_until(listener, completes(first["id"]))
        also_heard = await recv_until(hostile, completes(first["id"]))
        assert [(m["from"], m["to"]) for m in heard] == NOOP_PAIRS
        assert as_rows(also_heard) == as_rows(heard)

        # A frame over 64 KiB: that connection is closed (1009, message too big) ...
        await hostile.send("x" * (64 * 1024 + 1))
        await assert_closed(hostile, 1009)

        # ... a raw connection that speaks nonsense after the upgrade is dropped too ...
        address = urlsplit(server.base_url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(
            b"GET /api/v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        async with asyncio.timeout(RECV_TIMEOUT):
            status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        writer.write(b"\xff" * 4096)  # not a frame: reserved bits, bad opcode, unmasked
        async with asyncio.timeout(RECV_TIMEOUT):
            while await reader.read(65536):
                pass  # until the server drops the connection
        writer.close()

        # ... and the server stays healthy: it answers, and the other subscriber hears on.
        response = await server.client.get("/healthz")
        assert response.status_code == 200
        second = await server.create("demo.noop")
        heard = await recv_until(listener, completes(second["id"]))
        assert as_rows(heard) == db_rows(await server.transitions(second["id"]))
        assert heard[0]["seq"] == (await server.transitions(first["id"]))[-1]["seq"] + 1

    for _ in range(250):  # every subscription is released once its socket is gone
        if server.services.store.bus.subscriber_count == 0:
            break
        await asyncio.sleep(0.02)
    assert server.services.store.bus.subscriber_count == 0
    assert trouble(server_log) == []
