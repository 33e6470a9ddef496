"""Following the event stream from Python: `Client.events` / `wait` and their async twins.

The stream's promise (CONTRACT §3) is kept on this side too: a connection that drops is
opened again with `since` = the last `seq` seen, so no transition is missed, and one
already seen is dropped, so none is repeated; a snapshot sent in parts is handed over
as one. `wait` follows one task until it has ended, and polls while the stream cannot
be reached.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from taskstate.client.http import ClientError, Json, ServerUnreachable

if TYPE_CHECKING:
    from taskstate.client.aio import AsyncClient
    from taskstate.client.http import Client

#: Between polls of a task while its events cannot be followed.
POLL_SECONDS = 0.5
STREAM_FAILURES = (OSError, InvalidHandshake, ConnectionClosed, TimeoutError)


class Resync(Exception):
    """The server dropped this subscriber for falling behind: reconnect with `since`."""


class Cursor:
    """Where a follower is in the stream: its query, the last `seq`, a snapshot in parts."""

    def __init__(self, since: int | None, task_id: str | None, root_id: str | None) -> None:
        self.last = since
        self.scope = {k: v for k, v in (("task_id", task_id), ("root_id", root_id)) if v}
        self._snapshot: Json | None = None

    def query(self) -> dict[str, str]:
        return {**self.scope, **({"since": str(self.last)} if self.last is not None else {})}

    def take(self, raw: str | bytes) -> Json | None:
        """The event to hand over, or None (a part of a snapshot, a transition seen already)."""
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "error":
            raise ClientError(str(message.get("detail", "")), code=message.get("error"))
        if kind == "resync":
            raise Resync
        if kind == "snapshot":
            self._snapshot = message
            return self._finish_snapshot()
        if kind == "snapshot_part" and self._snapshot is not None:
            self._snapshot["tasks"] = self._snapshot["tasks"] + message["tasks"]
            self._snapshot["part"] = message["part"]
            return self._finish_snapshot()
        if kind == "transition":
            if self.last is not None and message["seq"] <= self.last:
                return None
            self.last = message["seq"]
        event: Json = message
        return event

    def _finish_snapshot(self) -> Json | None:
        snapshot = self._snapshot
        assert snapshot is not None
        if snapshot.get("part", 1) < snapshot.get("parts", 1):
            return None
        self._snapshot = None
        self.last = snapshot["seq"]
        return {"type": "snapshot", "seq": snapshot["seq"], "tasks": snapshot["tasks"]}


class Reconnects:
    """When to try the stream again, and when to give up (`reconnect_for` seconds of failing)."""

    def __init__(self, base_url: str, reconnect_for: float) -> None:
        self.base_url = base_url
        self.reconnect_for = reconnect_for
        self.failing_since: float | None = None
        self.delay = 0.2

    def connected(self) -> None:
        self.failing_since, self.delay = None, 0.2

    def failed(self, exc: BaseException) -> float:
        """Seconds to wait before the next try; raises `ServerUnreachable` past the limit."""
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > self.reconnect_for:
            raise ServerUnreachable.at(self.base_url, exc) from exc
        delay, self.delay = self.delay, min(self.delay * 2, 5.0)
        return delay


def _ended(event: Json, task_id: str) -> Json | None:
    """The task, if `event` shows it ended."""
    if event["type"] == "snapshot":
        for task in event["tasks"]:
            if task["id"] == task_id and task["is_terminal"]:
                found: Json = task
                return found
    elif event["type"] == "transition" and event["task_id"] == task_id and event["task"].get("is_terminal"):
        ended: Json = event["task"]
        return ended
    return None


def _left(deadline: float | None) -> float:
    if deadline is None:
        return 1.0
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the task did not end in time")
    return min(left, 1.0)


# -- synchronous ---------------------------------------------------------------------------------


def events_sync(
    client: Client, *, since: int | None, task_id: str | None, root_id: str | None, reconnect_for: float
) -> Iterator[Json]:
    from websockets.sync.client import connect

    cursor = Cursor(since, task_id, root_id)
    tries = Reconnects(client.base_url, reconnect_for)
    while True:
        try:
            url = client.events_url(cursor.query())
            with connect(url, open_timeout=10, close_timeout=2, max_size=None) as ws:
                tries.connected()
                for raw in ws:
                    event = cursor.take(raw)
                    if event is not None:
                        yield event
        except Resync:
            continue
        except STREAM_FAILURES as exc:
            time.sleep(tries.failed(exc))


def wait_sync(client: Client, task_id: str, timeout: float | None) -> Json:
    from websockets.sync.client import connect

    deadline = None if timeout is None else time.monotonic() + timeout
    task = client.get(task_id)
    if task["is_terminal"]:
        return task
    cursor = Cursor(None, task["id"], None)
    try:
        with connect(
            client.events_url(cursor.query()), open_timeout=10, close_timeout=2, max_size=None
        ) as ws:
            while True:
                wait = _left(deadline)  # past the deadline: TimeoutError, raised below
                try:
                    raw = ws.recv(timeout=wait)
                except TimeoutError:
                    continue
                event = cursor.take(raw)
                if event is not None and (ended := _ended(event, task["id"])) is not None:
                    return ended
    except TimeoutError:
        if deadline is not None and time.monotonic() >= deadline:
            raise
    except (OSError, InvalidHandshake, ConnectionClosed, Resync):
        pass  # the stream is out of reach: poll
    while True:
        task = client.get(task_id)
        if task["is_terminal"]:
            return task
        time.sleep(min(POLL_SECONDS, _left(deadline)))


# -- asynchronous --------------------------------------------------------------------------------


async def events_async(
    client: AsyncClient, *, since: int | None, task_id: str | None, root_id: str | None, reconnect_for: float
) -> AsyncIterator[Json]:
    from websockets.asyncio.client import connect

    cursor = Cursor(since, task_id, root_id)
    tries = Reconnects(client.base_url, reconnect_for)
    while True:
        try:
            url = client.events_url(cursor.query())
            async with connect(url, open_timeout=10, close_timeout=2, max_size=None) as ws:
                tries.connected()
                async for raw in ws:
                    event = cursor.take(raw)
                    if event is not None:
                        yield event
        except Resync:
            continue
        except STREAM_FAILURES as exc:
            await asyncio.sleep(tries.failed(exc))


async def wait_async(client: AsyncClient, task_id: str, timeout: float | None) -> Json:  # noqa: ASYNC109
    from websockets.asyncio.client import connect

    deadline = None if timeout is None else time.monotonic() + timeout
    task = await client.get(task_id)
    if task["is_terminal"]:
        return task
    cursor = Cursor(None, task["id"], None)
    try:
        url = client.events_url(cursor.query())
        async with connect(url, open_timeout=10, close_timeout=2, max_size=None) as ws:
            while True:
                wait = _left(deadline)  # past the deadline: TimeoutError, raised below
                try:
                    async with asyncio.timeout(wait):
                        raw = await ws.recv()
                except TimeoutError:
                    continue
                event = cursor.take(raw)
                if event is not None and (ended := _ended(event, task["id"])) is not None:
                    return ended
    except TimeoutError:
        if deadline is not None and time.monotonic() >= deadline:
            raise
    except (OSError, InvalidHandshake, ConnectionClosed, Resync):
        pass  # the stream is out of reach: poll
    while True:
        task = await client.get(task_id)
        if task["is_terminal"]:
            return task
        await asyncio.sleep(min(POLL_SECONDS, _left(deadline)))
