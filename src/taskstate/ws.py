"""The WebSocket `/api/v2/events` (CONTRACT §3): snapshot or replay, then live events.

The join between the database and the bus is what makes reconnecting safe:
subscribe to the bus *first*, then read the snapshot or the replay, then
deliver live events, dropping any transition whose `seq` was already sent.
Every transition committed before the read is in the read; every one
committed after it is in the queue; one published late is deduplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from taskstate.api.deps import Services
from taskstate.bus import Subscription

log = logging.getLogger(__name__)

router = APIRouter()

REPLAY_PAGE = 500
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


class BadQuery(ValueError):
    pass


def _parse_query(ws: WebSocket) -> tuple[int | None, str | None]:
    unknown = set(ws.query_params) - {"since", "task_id", "token"}
    if unknown:
        raise BadQuery(f"unknown query parameters: {sorted(unknown)}")
    since: int | None = None
    raw = ws.query_params.get("since")
    if raw is not None:
        if not raw.isdigit() or len(raw) > 18:
            raise BadQuery("since must be a non-negative integer (a seq)")
        since = int(raw)
    task_id = ws.query_params.get("task_id")
    if task_id is not None:
        try:
            task_id = str(uuid.UUID(task_id))
        except ValueError:
            raise BadQuery("task_id must be a task's UUID") from None
    return since, task_id


@router.websocket("/api/v2/events")
async def events(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    await ws.accept()
    try:
        since, task_id = _parse_query(ws)
    except BadQuery as exc:
        await ws.send_text(json.dumps({"type": "error", "error": "validation_error", "detail": str(exc)}))
        await ws.close(POLICY_VIOLATION)
        return
    subscription = services.store.bus.subscribe(task_id)
    sender = asyncio.create_task(_send_events(ws, services, subscription, since, task_id))
    receiver = asyncio.create_task(_drain_client(ws))
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for finished in done:
            error = None if finished.cancelled() else finished.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect | ConnectionError):
                log.warning("event stream ended with an error", exc_info=error)
    finally:
        subscription.close()
        for task in (sender, receiver):
            task.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)
        if ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close()


async def _drain_client(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, so that a disconnect is noticed at once."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _send_events(
    ws: WebSocket,
    services: Services,
    subscription: Subscription,
    since: int | None,
    task_id: str | None,
) -> None:
    store = services.store
    if since is None:
        last, items = await store.snapshot()
        if task_id is not None:
            items = [t for t in items if t["id"] == task_id]
            if not items:
                row = await store.get_task_row(task_id)
                if row is not None:
                    items = [await store.get_task(task_id)]
        await ws.send_text(
            json.dumps({"type": "snapshot", "seq": last, "tasks": items}, separators=(",", ":"))
        )
    else:
        last = since
        while True:
            page = await store.transitions_since(last, task_id=task_id, limit=REPLAY_PAGE)
            for event in page:
                await ws.send_text(event.text)
                assert event.seq is not None
                last = event.seq
            if len(page) < REPLAY_PAGE:
                break
    while True:
        event = await subscription.get()
        if subscription.overflowed:
            await ws.send_text('{"type":"resync"}')
            await ws.close(TRY_AGAIN_LATER)
            return
        if event.seq is not None:
            if event.seq <= last:
                continue
            last = event.seq
        await ws.send_text(event.text)
