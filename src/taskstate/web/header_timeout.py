"""uvicorn's HTTP protocols with a deadline for a request's headers.

uvicorn closes a keep-alive connection that stays idle for `timeout_keep_alive`, but it sets
no limit on how long a client may take to send a request's line and headers: a connection
that sends nothing at all, or a byte now and then (slowloris), is held open for ever, with
its file descriptor and buffers. The protocol classes here arm a timer when a connection
opens and when a new request begins, and cancel it once the request's headers are complete;
a connection still short of complete headers when it fires is closed. The body, the answer
and a WebSocket's life after its handshake are not bounded by it.

`header_timeout_protocol(seconds)` gives the class to pass as `uvicorn.Config(http=...)`:
httptools' protocol when httptools is installed (uvicorn's own "auto" choice), else h11's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

#: Seconds a client has to complete a request's headers (TASKSTATE_HEADER_TIMEOUT_SECONDS).
DEFAULT_HEADER_TIMEOUT = 10.0


class _Deadline:
    """One connection's timer: armed at most once at a time, cancelled on demand."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, expire: Callable[[], None]) -> None:
        self._loop = loop
        self._seconds = seconds
        self._expire = expire
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        """Starts the clock, unless it runs already (a request's deadline is not pushed back)."""
        if self._timer is None:
            self._timer = self._loop.call_later(self._seconds, self._fire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._expire()


def _headers_too_slow(protocol: Any) -> None:
    """The deadline passed: close the connection (either protocol class; same attributes)."""
    transport: asyncio.Transport = protocol.transport
    if transport.is_closing():
        return
    cycle = protocol.cycle
    if cycle is not None and not cycle.response_complete:
        # A pipelined request whose headers wait behind an answer still being sent: the
        # server is the slow one. Give the client another period once the answer is done.
        protocol._header_deadline.arm()
        return
    log.info(
        "closed a connection from %s: no complete request headers within %g s",
        protocol.client,
        protocol.header_timeout,
    )
    transport.close()


#: The mixin's base, typed loosely: it sits before one of uvicorn's protocol classes.
_Protocol: Any = object


class _HeaderDeadline(_Protocol):  # type: ignore[misc]
    """The deadline's life on a connection: armed when it opens, dropped when it closes.

    Mixed in before uvicorn's protocol class; each subclass disarms it where its parser
    says the headers are complete.
    """

    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline = _Deadline(self.loop, self.header_timeout, self._headers_too_slow)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._header_deadline.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_deadline.disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        _headers_too_slow(self)


class H11HeaderTimeout(_HeaderDeadline, H11Protocol):
    """h11's protocol with the header deadline.

    h11 parses inside `handle_events`: after it, the peer's state says where the request
    stands (IDLE: no complete request line and headers yet).
    """

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._header_deadline.disarm()  # the request line and headers are in
        elif self.conn.trailing_data[0]:
            self._header_deadline.arm()  # part of a new request: its clock starts
        # else idle between requests: uvicorn's keep-alive timeout closes it.

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._header_deadline.disarm()
        super().handle_websocket_upgrade(event)


def _httptools_class() -> type[asyncio.Protocol] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is a dependency of uvicorn[standard]
        return None

    class HttpToolsHeaderTimeout(_HeaderDeadline, HttpToolsProtocol):
        """httptools' protocol with the header deadline.

        The parser calls `on_message_begin` at a request's first byte and
        `on_headers_complete` once its headers are in.
        """

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_deadline.arm()

        def on_headers_complete(self) -> None:
            self._header_deadline.disarm()
            super().on_headers_complete()

        def handle_websocket_upgrade(self) -> None:
            self._header_deadline.disarm()
            super().handle_websocket_upgrade()

    return HttpToolsHeaderTimeout


_HTTPTOOLS = _httptools_class()


def header_timeout_protocol(
    seconds: float = DEFAULT_HEADER_TIMEOUT, implementation: Literal["auto", "httptools", "h11"] = "auto"
) -> type[asyncio.Protocol]:
    """The HTTP protocol class for `uvicorn.Config(http=...)`, closing connections whose
    request headers are not complete within `seconds`."""
    if implementation == "httptools" and _HTTPTOOLS is None:
        raise RuntimeError("httptools is not installed")
    base = _HTTPTOOLS if implementation != "h11" and _HTTPTOOLS is not None else H11HeaderTimeout
    return type(base.__name__, (base,), {"header_timeout": float(seconds)})
