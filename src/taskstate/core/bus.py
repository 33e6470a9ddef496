"""The in-process event bus: what the store publishes after a commit reaches subscribers.

Every subscriber owns a bounded queue. Publishing never waits: a subscriber
whose queue is full is marked `overflowed` and dropped from the bus, and its
reader tells the client to `resync` (CONTRACT §3). A slow client can never
hold up the service or any other subscriber.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: A token was revoked (`token_id`): its WebSockets must close, on every instance.
TOKEN_REVOKED = "token_revoked"
#: Events for listeners and other instances only: not part of the event stream (CONTRACT §3),
#: so never queued for a subscriber.
INTERNAL_TYPES = frozenset({TOKEN_REVOKED})


@dataclass(slots=True)
class Event:
    """One message for subscribers, serialised once however many receive it, and not at
    all when nobody does (most transitions, on a busy worker with no UI open)."""

    type: str
    task_id: str
    seq: int | None
    payload: dict[str, Any] = field(repr=False, compare=False)
    _text: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, payload: dict[str, Any]) -> Event:
        seq = payload.get("seq") if payload["type"] == "transition" else None
        return cls(type=payload["type"], task_id=payload["task_id"], seq=seq, payload=payload)

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = json.dumps(self.payload, separators=(",", ":"), default=str)
        return self._text


class Subscription:
    """A subscriber's bounded backlog; `overflowed` once it fell too far behind.

    The bound is checked per publication (one commit's transitions arrive
    together): a subscriber is cut off only if it is still `maxsize` events
    behind when the next publication arrives. A burst from one commit, however
    large, never overflows a subscriber that keeps up: it had no chance to read.

    A deque and one future, not an `asyncio.Queue`: a queue is four deques and an
    event (about 3 KiB), held for the life of every idle subscriber.
    """

    __slots__ = ("_backlog", "_bus", "_waiter", "maxsize", "overflowed", "task_id")

    def __init__(self, bus: EventBus, maxsize: int, task_id: str | None) -> None:
        self._bus = bus
        self.task_id = task_id
        self.maxsize = maxsize
        self.overflowed = False
        self._backlog: deque[Event] | None = None  # made by the first event offered
        self._waiter: asyncio.Future[None] | None = None

    @property
    def pending(self) -> int:
        """Events offered and not yet taken."""
        return len(self._backlog) if self._backlog is not None else 0

    def offer(self, events: Sequence[Event]) -> None:
        if self.overflowed:
            return
        if self.task_id is not None:
            events = [e for e in events if e.task_id == self.task_id]
        if not events:
            return
        if self.pending >= self.maxsize:
            self.overflowed = True
            self._bus.unsubscribe(self)
            return
        if self._backlog is None:
            self._backlog = deque(events)
        else:
            self._backlog.extend(events)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Event:
        """The next event, waiting for one."""
        while not self._backlog:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._backlog.popleft()

    def take_ready(self) -> list[Event]:
        """Every event offered and not yet taken, without waiting."""
        ready = list(self._backlog or ())
        if self._backlog is not None:
            self._backlog.clear()
        return ready

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []
        #: Sends this instance's live events to the other instances (PostgreSQL NOTIFY), if set.
        self.forwarder: Callable[[Event], None] | None = None

    def subscribe(self, task_id: str | None = None, maxsize: int | None = None) -> Subscription:
        subscription = Subscription(self, maxsize or self.queue_size, task_id)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` synchronously for every event (in-process components only)."""
        self._listeners.append(listener)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def publish(self, event: Event, *, forward: bool = True) -> None:
        """Deliver `event` here; `forward` it to other instances unless it came from one
        (or is a transition: those travel through the database, see feed.py)."""
        self.publish_many((event,), forward=forward)

    def publish_many(self, events: Sequence[Event], *, forward: bool = True) -> None:
        """Deliver `events` (e.g. one commit's transitions, in order) as one publication."""
        for event in events:
            if forward and self.forwarder is not None and event.seq is None:
                self.forwarder(event)
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener failed")
        if any(event.type in INTERNAL_TYPES for event in events):
            events = [event for event in events if event.type not in INTERNAL_TYPES]
        for subscription in list(self._subscriptions):
            subscription.offer(events)
