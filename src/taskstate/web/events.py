"""The WebSocket `/api/v2/events` (CONTRACT §3): snapshot or replay, then live events.

The join between the database and the bus is what makes reconnecting safe:
subscribe to the bus *first*, then read the snapshot or the replay, then
deliver live events, dropping any transition whose `seq` was already sent.
Every transition committed before the read is in the read; every one
committed after it is in the queue; one published late is deduplicated.

A socket opened with a token lives no longer than the token: once it is
revoked, the socket is sent the `unauthorized` error and closed (1008), as a
bad token is at the start (auth.RevocationWatch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from typing import Any, Literal

from fastapi import APIRouter, WebSocket
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect, WebSocketState

from taskstate.core.bus import Event, Subscription
from taskstate.core.errors import TaskstateError
from taskstate.web.auth import ANONYMOUS, Principal, Unauthorized, authenticate
from taskstate.web.deps import Services

log = logging.getLogger(__name__)


#: uvicorn's WebSocket implementation for this endpoint: the sans-I/O one runs a connection
#: on timers and callbacks where the default (websockets' legacy protocol) keeps three tasks
#: and its own buffers per connection, and every connection here is a long-lived subscriber.
WS_PROTOCOL: Literal["websockets-sansio"] = "websockets-sansio"

REPLAY_PAGE = 500
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


#: A seq as a query parameter: ASCII digits only, at most 18 of them.
_SEQ = re.compile(r"[0-9]{1,18}")


class BadQuery(ValueError):
    pass


def _parse_query(ws: WebSocket) -> tuple[int | None, str | None, str | None]:
    unknown = set(ws.query_params) - {"since", "task_id", "root_id", "token"}
    if unknown:
        raise BadQuery(f"unknown query parameters: {sorted(unknown)}")
    since: int | None = None
    raw = ws.query_params.get("since")
    if raw is not None:
        # Not str.isdigit(): it takes superscripts (which int() refuses) and other scripts' digits
        # (Arabic-Indic 3, fullwidth 1), which int() reads as 3 and 1.
        if _SEQ.fullmatch(raw) is None:
            raise BadQuery("since must be a non-negative integer (a seq) in ASCII digits")
        since = int(raw)
    return since, _task_id(ws, "task_id"), _task_id(ws, "root_id")


def _task_id(ws: WebSocket, name: str) -> str | None:
    value = ws.query_params.get(name)
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadQuery(f"{name} must be a task's UUID") from None


async def events(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    await ws.accept()
    try:
        since, task_id, root_id = _parse_query(ws)
    except BadQuery as exc:
        await ws.send_text(json.dumps({"type": "error", "error": "validation_error", "detail": str(exc)}))
        await ws.close(POLICY_VIOLATION)
        return
    try:
        principal = await _authenticate(ws, services)
    except TaskstateError as exc:
        await ws.send_text(json.dumps(exc.to_body() | {"type": "error"}))
        await ws.close(POLICY_VIOLATION)
        return
    if since is not None:
        newest = await services.reads.latest_seq()
        if since > newest:
            # Seq is gap-free and commit-ordered: no client can have seen one past the newest
            # committed seq, and a subscriber waiting for it would never hear anything.
            detail = (
                f"since={since} is ahead of the newest seq {newest}: reconnect without since"
                " for a snapshot (the database may have been reset)"
            )
            refusal = {"type": "error", "error": "validation_error", "detail": detail, "newest_seq": newest}
            await ws.send_text(json.dumps(refusal))
            await ws.close(POLICY_VIOLATION)
            return
    visible = _Visibility(services, principal, root_id)
    subscription = services.store.bus.subscribe(task_id)
    sender = asyncio.create_task(_send_events(ws, services, subscription, since, task_id, visible))
    receiver = asyncio.create_task(_drain_client(ws))
    revoked = False

    def revoke() -> None:
        nonlocal revoked
        revoked = True
        sender.cancel()

    with services.revocations.watch(principal.token_id, revoke):
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                error = None if finished.cancelled() else finished.exception()
                if isinstance(error, TimeoutError):
                    log.info("dropped a WebSocket client that stopped reading")
                elif error is not None and not isinstance(error, WebSocketDisconnect | ConnectionError):
                    log.warning("event stream ended with an error", exc_info=error)
        finally:
            subscription.close()
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            if ws.client_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        if revoked:
                            refusal = Unauthorized("the token was revoked").to_body() | {"type": "error"}
                            await ws.send_text(json.dumps(refusal))
                            await ws.close(POLICY_VIOLATION)
                        else:
                            await ws.close()


AUTH_WAIT_SECONDS = 5


async def _authenticate(ws: WebSocket, services: Services) -> Principal:
    """With auth on: a token in `?token=`, or a first message `{"type": "auth", "token": ...}`."""
    settings = services.settings
    if settings.auth == "off":
        return ANONYMOUS
    token = ws.query_params.get("token")
    if token is None:
        try:
            async with asyncio.timeout(AUTH_WAIT_SECONDS):
                message = json.loads(await ws.receive_text())
        except (TimeoutError, ValueError, KeyError, RuntimeError, WebSocketDisconnect):
            message = None
        if (
            isinstance(message, dict)
            and message.get("type") == "auth"
            and isinstance(message.get("token"), str)
        ):
            token = message["token"]
    return await authenticate(services.store, token, shared_tasks=settings.auth_shared_tasks)


class _Visibility:
    """Which events a subscriber may see: all of them, or those of its own tasks; and, with
    `root_id`, only those of that tree (CONTRACT §6)."""

    def __init__(self, services: Services, principal: Principal, root_id: str | None = None) -> None:
        self._reads = services.reads
        self._me = principal.owner_filter
        self._root = root_id
        self.root = root_id
        #: (owner, root) of the tasks seen, so that live events need no read.
        self._known: dict[str, tuple[str | None, str]] = {}

    def owner(self, owner: str | None) -> bool:
        return self._me is None or owner == self._me

    def task(self, task: dict[str, Any]) -> bool:
        return self.owner(task.get("owner")) and (self._root is None or task.get("root_id") == self._root)

    async def event(self, event: Event) -> bool:
        if self._me is None and self._root is None:
            return True
        task = event.payload.get("task")
        if isinstance(task, dict) and "owner" in task and "root_id" in task:
            self._known[event.task_id] = (task["owner"], task["root_id"])
        elif event.task_id not in self._known:
            row = await self._reads.get_task_row(event.task_id)
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[event.task_id] = (
                (row["owner"], row["root_id"] or row["id"]) if row is not None else (None, "")
            )
        owner, root = self._known[event.task_id]
        return self.owner(owner) and (self._root is None or root == self._root)


async def _drain_client(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, so that a disconnect is noticed at once."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


#: The most task JSON one snapshot message carries. The `websockets` client takes frames of up
#: to 1 MiB by default, and 10,000 queued tasks are 9 MiB: a snapshot goes in parts.
SNAPSHOT_PART_BYTES = 256 * 1024


def snapshot_messages(seq: int, tasks: list[dict[str, Any]]) -> list[str]:
    """The snapshot as messages of at most SNAPSHOT_PART_BYTES of tasks each (a task larger
    than that travels alone), split by size, not by count.

    The first is `{"type": "snapshot", "seq", "part": 1, "parts": N, "tasks"}`, as a client
    that knows nothing of parts expects it; the others `{"type": "snapshot_part", ...}` with the
    same `seq` and `parts`, `part` 2..N. All come from the one read, before any live event.
    """
    parts: list[list[str]] = [[]]
    size = 0
    for task in tasks:
        text = json.dumps(task, separators=(",", ":"))  # ASCII: its length is its size
        if parts[-1] and size + len(text) + 1 > SNAPSHOT_PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(text)
        size += len(text) + 1
    count = len(parts)
    return [
        f'{{"type":"{"snapshot" if number == 1 else "snapshot_part"}","seq":{int(seq)},'
        f'"part":{number},"parts":{count},"tasks":[{",".join(part)}]}}'
        for number, part in enumerate(parts, 1)
    ]


#: The event stream, for the OpenAPI document (which has no way to describe a WebSocket).
EVENT_STREAM_DOC = f"""\
## Event stream: WebSocket `/api/v2/events`

Query: `since` (a seq, ASCII digits), `task_id` (one task), `root_id` (a whole tree: the task
and every task spawned under it), `token` (when auth is on).

- Without `since`: a snapshot of the active tasks, then live events. The snapshot is one or
  more messages, each with at most {SNAPSHOT_PART_BYTES // 1024} KiB of tasks, so that a client
  with a 1 MiB frame limit takes any snapshot:
  `{{"type": "snapshot", "seq": S, "part": 1, "parts": N, "tasks": [...]}}`, then, when N > 1,
  `{{"type": "snapshot_part", "seq": S, "part": k, "parts": N, "tasks": [...]}}` for k = 2..N.
  All parts come from one read and arrive before any live event; the snapshot is complete
  once part N is in. A client that ignores `snapshot_part` sees the first part only.
- With `since`: every transition with `seq > since`, in order, then live events.
- A bad query gets `{{"type": "error", "error": "validation_error", "detail": ...}}` and close
  code 1008; so does a `since` ahead of the newest committed seq M, with `"newest_seq": M`
  (reconnect without `since` for a snapshot).
- Events: `transition` (with `seq`), `progress`, `log`, `question`; `{{"type": "resync"}}` then a
  close (1013) for a subscriber that fell too far behind: reconnect with `since`.
"""

#: A client that cannot take one message in this long is gone: its connection is dropped.
SEND_TIMEOUT_SECONDS = 10


async def _send(ws: WebSocket, text: str) -> None:
    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
        await ws.send_text(text)


async def _send_events(
    ws: WebSocket,
    services: Services,
    subscription: Subscription,
    since: int | None,
    task_id: str | None,
    visible: _Visibility,
) -> None:
    store = services.store
    if since is None:
        last, items = await store.reads.snapshot()
        items = [t for t in items if visible.task(t)]
        if task_id is not None:
            items = [t for t in items if t["id"] == task_id]
            if not items:
                row = await store.reads.get_task_row(task_id)
                if row is not None and visible.owner(row["owner"]):
                    items = [await store.reads.get_task(task_id)]
        for text in snapshot_messages(last, items):
            await _send(ws, text)
    else:
        last = since
        while True:
            page = await store.reads.transitions_since(
                last, task_id=task_id, root_id=visible.root, limit=REPLAY_PAGE
            )
            for event in page:
                assert event.seq is not None
                last = event.seq
                if await visible.event(event):
                    await _send(ws, event.text)
            if len(page) < REPLAY_PAGE:
                break
    while True:
        event = await subscription.get()
        if subscription.overflowed:
            await _send(ws, '{"type":"resync"}')
            await ws.close(TRY_AGAIN_LATER)
            return
        if event.seq is not None:
            if event.seq <= last:
                continue
            last = event.seq
        if await visible.event(event):
            await _send(ws, event.text)


#: Starlette's own route, not FastAPI's: the endpoint takes no dependencies, and FastAPI's
#: wrapping (three exit stacks and a dependency solve) would stay in memory for the life of
#: every subscriber.
router = APIRouter(routes=[WebSocketRoute("/api/v2/events", events)])
