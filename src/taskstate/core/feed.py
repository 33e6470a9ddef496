"""The feed: the one way into the event bus, for every event a subscriber receives.

Transitions reach it from three places: this instance's commits (at once),
PostgreSQL `NOTIFY` from other instances (within milliseconds), and the
database itself (a gap that lasts, or the periodic tail check, when a
notification was lost or the listener was down); it hands them to the bus
once each, in `seq` order. Live events (progress, log lines, questions) reach
it from this instance's jobs and commits, to be forwarded to the other
instances too, and from the other instances, not to be forwarded again. `seq` is gap-free and
commit-ordered (writer.py), so a held-back `seq` always means "committed
but not seen yet", and reading the table fills it. The bus therefore sees
transitions in strict `seq` order, which is what lets a WebSocket drop
every `seq` it already sent without ever dropping one it did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from taskstate.core.bus import Event, EventBus
from taskstate.core.writer import TransitionRecord

log = logging.getLogger(__name__)

#: How long a gap may last before it is filled from the database.
GAP_WAIT_SECONDS = 0.2
READ_PAGE = 1000

#: Reads committed transitions with seq > after, in order, at most `limit`: (records, newest committed seq).
Reader = Callable[[int, int], Awaitable[tuple[list[TransitionRecord], int]]]


class TransitionFeed:
    def __init__(
        self,
        bus: EventBus,
        event_of: Callable[[TransitionRecord], Event],
        read: Reader,
        on_remote: Callable[[list[TransitionRecord]], None],
    ) -> None:
        self._bus = bus
        self._event_of = event_of
        self._read = read
        self._on_remote = on_remote
        self._next: int | None = None  # None until we know where "now" is
        self._held: dict[int, TransitionRecord] = {}
        self._wanted = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._filler: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def live(self, events: list[Event], *, forward: bool = True) -> None:
        """Live events (no `seq`): this instance's (`forward` them to the other instances)
        or another instance's."""
        if events:
            self._bus.publish_many(events, forward=forward)

    def local(self, records: list[TransitionRecord]) -> None:
        """Transitions this instance just committed."""
        self._offer(records)

    def remote(self, records: list[TransitionRecord]) -> None:
        """Transitions another instance committed (already read from the database)."""
        start = self._next if self._next is not None else 0
        fresh = [r for r in records if r.seq is not None and r.seq >= start and r.seq not in self._held]
        if fresh:
            self._on_remote(fresh)
        self._offer(fresh)

    def _offer(self, records: list[TransitionRecord]) -> None:
        seqs = [rec.seq for rec in records if rec.seq is not None]
        if not seqs:
            return
        if self._next is None:
            self._next = min(seqs)
        for rec in records:
            if rec.seq is not None and rec.seq >= self._next:
                self._held[rec.seq] = rec
        self._drain()
        if self._held and self._filler is None:
            self._filler = asyncio.create_task(self._fill_gaps(), name="taskstate-feed-gap")

    def _drain(self) -> None:
        assert self._next is not None
        ready = []
        while self._next in self._held:
            rec = self._held.pop(self._next)
            self._next += 1
            ready.append(self._event_of(rec))
        if ready:  # one publication: a commit's burst is not a slow subscriber
            self._bus.publish_many(ready, forward=False)

    def request_catch_up(self) -> None:
        """Something was committed elsewhere (a notification): read it soon, once."""
        self._wanted.set()

    def start(self, tail_seconds: float) -> None:
        """Follow the database: on request, and every `tail_seconds` as a safety net."""
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow(tail_seconds), name="taskstate-feed")

    async def _follow(self, tail_seconds: float) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), timeout=tail_seconds)
            self._wanted.clear()
            try:
                await self.catch_up()
            except Exception:
                log.warning("reading new transitions failed", exc_info=True)
                await asyncio.sleep(tail_seconds)

    async def _fill_gaps(self) -> None:
        """While a seq is held back, give its predecessors a moment, then read them."""
        try:
            while self._held:
                await asyncio.sleep(GAP_WAIT_SECONDS)
                if self._held:
                    await self.catch_up()
        except Exception:
            # The follower's periodic catch-up will fill it.
            log.warning("filling a gap in the transition feed failed", exc_info=True)
        finally:
            self._filler = None

    async def catch_up(self) -> None:
        """Read and deliver everything committed that this instance has not delivered yet."""
        async with self._lock:
            if self._next is None:
                _, committed = await self._read(0, 0)
                if self._next is None:
                    self._next = committed + 1
                return
            while True:
                after = self._next - 1
                records, committed = await self._read(after, READ_PAGE)
                records = [r for r in records if r.seq is not None and r.seq > after]
                if records:
                    self.remote(records)
                if len(records) < READ_PAGE:
                    # Everything up to `committed` is read; seqs that are not there were deleted.
                    self._skip_through(committed)
                    return

    def _skip_through(self, committed: int) -> None:
        """Seqs up to `committed` that the table does not have were deleted: step over them."""
        assert self._next is not None
        if committed < self._next:
            return
        stale = sorted(s for s in self._held if s <= committed)
        ready = [self._event_of(self._held.pop(seq)) for seq in stale]
        if ready:
            self._bus.publish_many(ready, forward=False)
        self._next = committed + 1
        self._drain()

    async def close(self) -> None:
        for task in (self._filler, self._follower):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._filler = self._follower = None
