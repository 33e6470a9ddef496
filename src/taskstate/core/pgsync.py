"""Instances on one PostgreSQL database hear each other through LISTEN/NOTIFY.

Each instance holds one dedicated connection that LISTENs on the channel.
Two kinds of notification travel on it:

- `{"o": origin, "t": [first, last]}`, sent by the writer inside the
  transaction that committed transitions `first..last` (so delivered on
  commit, never for a rollback). The receiver reads them from the database
  through the feed, which keeps `seq` order and fills any gap.
- `{"o": origin, "e": [event, ...]}`: live events (progress, log, question),
  batched up to PostgreSQL's 8000-byte payload limit. Live events are
  best-effort by contract; what matters for correctness goes through the
  database.

If the connection drops it is reopened with backoff, and the feed reads
whatever was committed meanwhile: nothing is lost while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import make_url

from taskstate.core.bus import Event, EventBus

log = logging.getLogger(__name__)

MAX_PAYLOAD = 7900
MAX_FORWARD_QUEUE = 10_000


def _set(event: asyncio.Event, _conn: object) -> None:
    event.set()


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _slim(event: Event) -> str | None:
    """The event as it travels to other instances, or None if it cannot fit in one payload."""
    if len(event.text) <= MAX_PAYLOAD - 100:
        return event.text
    payload = dict(event.payload)
    if isinstance(payload.get("message"), str):
        payload["message"] = payload["message"][:2000] + "… [truncated between instances]"
    question = payload.get("question")
    if isinstance(question, dict):
        payload["question"] = {k: question.get(k) for k in ("id", "status", "question", "choices", "answer")}
    text = json.dumps(payload, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_PAYLOAD - 100 else None


class PostgresSync:
    def __init__(
        self,
        url: str,
        channel: str,
        instance_id: str,
        bus: EventBus,
        *,
        committed_elsewhere: Callable[[], None],
        live_elsewhere: Callable[[list[Event]], None],
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._channel = channel
        self._me = instance_id
        self._bus = bus
        #: Told that another instance committed transitions (or that some may have been missed).
        self._committed_elsewhere = committed_elsewhere
        #: Given the live events of other instances.
        self._live_elsewhere = live_elsewhere
        self._outbox: deque[str] = deque()
        self._outbox_ready = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._runner: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.dropped_events = 0

    def start(self) -> None:
        self._bus.forwarder = self._forward
        self._runner = asyncio.create_task(self._run(), name="taskstate-pg-listen")

    async def close(self) -> None:
        self._bus.forwarder = None
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)

    def _forward(self, event: Event) -> None:
        text = _slim(event)
        if text is None:
            self.dropped_events += 1
            return
        if len(self._outbox) >= MAX_FORWARD_QUEUE:
            self.dropped_events += 1
            return
        self._outbox.append(text)
        self._outbox_ready.set()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=10,
                    server_settings={"application_name": f"taskstate-listen:{self._me}"},
                )
                conn.add_termination_listener(functools.partial(_set, lost))
                await conn.add_listener(self._channel, self._on_notification)
                self._conn = conn
                self.connected.set()
                delay = 0.1
                # Whatever was committed while we were not listening.
                self._committed_elsewhere()
                sender = asyncio.create_task(self._send(conn))
                try:
                    await lost.wait()
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await sender
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, delay)
            self.connected.clear()
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _send(self, conn: asyncpg.Connection) -> None:
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            batch = [self._outbox.popleft()]
            size = len(batch[0])
            # As many as fit in one payload.
            while self._outbox and size + len(self._outbox[0]) + 1 <= MAX_PAYLOAD - 60:
                nxt = self._outbox.popleft()
                batch.append(nxt)
                size += len(nxt) + 1
            payload = '{"o":' + json.dumps(self._me) + ',"e":[' + ",".join(batch) + "]}"
            try:
                await conn.execute("SELECT pg_notify($1, $2)", self._channel, payload)
            except Exception:
                self.dropped_events += len(batch)
                raise

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("ignoring a malformed notification on %s", self._channel)
            return
        if message.get("o") == self._me:
            return
        if "t" in message:
            self._committed_elsewhere()
        events = [
            Event.of(event)
            for event in message.get("e", ())
            if isinstance(event, dict) and "type" in event and "task_id" in event
        ]
        self._live_elsewhere(events)
