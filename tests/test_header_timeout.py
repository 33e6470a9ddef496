"""Slow clients (slowloris) cannot hold connections: a request's headers have a deadline.

Raw sockets against a real `taskstate serve` subprocess, and against the in-process server on
each of uvicorn's HTTP implementations. The database plays no part here: SQLite only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Literal

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.processes import ServerProcess
from tests.support.servers import live_server, make_settings

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def closed_after(
    host: str, port: int, kind: str, started: asyncio.Event | None = None, give_up: float = 15
) -> float:
    """Opens a connection that misbehaves as `kind`; answers the seconds until the server closed it.

    silent: sends nothing. partial: half a request line. trickle: headers, a byte every 0.2 s,
    never finished. idle: one whole request, then nothing (keep-alive). next: one whole request,
    then half of the next one.
    """
    # Timed from before the connect: the server arms its deadline when it accepts, which is
    # after this, while the connect may return late to a test busy opening 200 of them.
    begin = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    if started is not None:
        started.set()

    async def misbehave() -> None:
        if kind == "partial":
            writer.write(b"GET /healthz HT")
        elif kind in ("idle", "next"):
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:])
            await reader.readexactly(length)
            if kind == "next":
                writer.write(b"GET /healthz HTTP/1.1\r\nHo")
        elif kind == "trickle":
            for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 10_000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)

    async def until_eof() -> None:
        if kind in ("idle", "next"):
            await sending  # the answer to the whole request comes first
        while await reader.read(65536):
            pass

    sending = asyncio.ensure_future(misbehave())
    try:
        async with asyncio.timeout(give_up):
            try:
                await until_eof()
            except ConnectionError:
                pass
        return time.monotonic() - begin
    finally:
        sending.cancel()
        writer.close()


async def test_taskstate_serve_closes_slow_clients(tmp_path: Path) -> None:
    """200 connections that never complete their headers are closed within the timeout (1 s
    here), while a normal request, and a slow one within the timeout, are answered."""
    process = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'taskstate.db'}", tmp_path, TASKSTATE_HEADER_TIMEOUT_SECONDS=1
    )
    try:
        await process.start()
        kinds = ["silent", "partial", "trickle"] * 66 + ["idle", "next"]
        slow: list[Awaitable[float]] = [closed_after("127.0.0.1", process.port, k) for k in kinds]
        closing = asyncio.gather(*slow)

        await asyncio.sleep(0.3)  # every slow connection is open now
        async with httpx.AsyncClient(base_url=process.url, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
        # A client that takes its time, but less than the timeout, is answered.
        reader, writer = await asyncio.open_connection("127.0.0.1", process.port)
        for piece in (REQUEST[:10], REQUEST[10:20], REQUEST[20:]):
            writer.write(piece)
            await asyncio.sleep(0.2)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.close()

        seconds = dict(zip(range(len(kinds)), await closing, strict=True))
        by_kind: dict[str, list[float]] = {}
        for index, kind in enumerate(kinds):
            by_kind.setdefault(kind, []).append(seconds[index])
        for kind in ("silent", "partial", "trickle"):
            assert 0.8 < min(by_kind[kind]) and max(by_kind[kind]) < 5, (kind, by_kind[kind])
        # A request begun after a whole one: its headers have the same deadline.
        assert 0.8 < by_kind["next"][0] < 5, by_kind["next"]
        # Idle between requests: uvicorn's keep-alive timeout (5 s) closes it, as it did.
        assert 4.5 < by_kind["idle"][0] < 10, by_kind["idle"]
    finally:
        process.stop_quietly()


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_both_http_implementations_close_slow_clients(
    tmp_path: Path, http: Literal["httptools", "h11"]
) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'taskstate.db'}", header_timeout_seconds=0.5)
    async with live_server(settings, http=http) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        async with connect(server.ws_url) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            kinds = ["silent", "partial", "trickle", "next"] * 5
            closed = await asyncio.gather(*(closed_after("127.0.0.1", port, k) for k in kinds))
            assert all(0.4 < s < 4 for s in closed), list(zip(kinds, closed, strict=True))
            # The WebSocket, open for longer than the timeout, is not a slow request: it hears on.
            task = await server.create("demo.noop")
            async with asyncio.timeout(10):
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("task_id") == task["id"] and message.get("to") == "completed":
                        break
        assert (await server.client.get("/healthz")).status_code == 200
