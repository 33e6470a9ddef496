"""A lean WebSocket subscriber for the latency rows: a bare asyncio protocol that does the
opening handshake, then only splits the server's frames and stamps their arrival.

With 1,000 subscribers in the bench process, the `websockets` client spends tens of
microseconds of Python on every frame it receives, on the same two cores as the server:
the clients' share of the figure grows with their number. This one spends a few, so that
a latency row with many subscribers measures the server more than the bench (as `wrk`
does for the HTTP rows). It offers no compression, answers pings and closes cleanly;
nothing else of the protocol is needed to listen.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame (RFC 6455 §5.3: every client frame is masked)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + mask + masked


class LeanSubscriber(asyncio.Protocol):
    """Calls `on_text(receipt time, text)` with every text frame; keeps what it is told in
    `frames` (the caller's)."""

    def __init__(self, on_text: Callable[[float, str], None]) -> None:
        self.on_text = on_text
        self.frames: list[tuple[float, str]] = []
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handshaken = False
        self._request = b""

    @classmethod
    async def connect(cls, url: str, on_text: Callable[[float, str], None]) -> LeanSubscriber:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

        def make() -> LeanSubscriber:
            protocol = cls(on_text)
            protocol._request = request
            return protocol

        _, protocol = await loop.create_connection(make, parts.hostname, parts.port)
        await protocol.opened
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        self._buffer += data
        if not self._handshaken:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buffer[: self._buffer.find(b"\r\n")])
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(f"handshake refused: {status!r}"))
                assert self._transport is not None
                self._transport.close()
                return
            del self._buffer[: end + 4]
            self._handshaken = True
            self.opened.set_result(None)
        self._frames(received)

    def _frames(self, received: float) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                (length,), start = struct.unpack_from("!H", buffer, 2), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                (length,), start = struct.unpack_from("!Q", buffer, 2), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == TEXT:
                self.on_text(received, payload.decode())
            elif opcode == PING and self._transport is not None:
                self._transport.write(_client_frame(PONG, payload))
            elif opcode == CLOSE and self._transport is not None:
                self._transport.close()

    async def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_client_frame(CLOSE, struct.pack("!H", 1000)))
            try:
                await asyncio.wait_for(asyncio.shield(self.closed), 5)
            except TimeoutError:
                self._transport.close()
