"""Latencies: transition → WebSocket subscriber, fan-out to many idle subscribers, and the
HTTP API under 50 concurrent clients.

A subscriber's latency is the time it received a `transition` frame minus the
transition's own `at` (stamped by the server inside the transaction, before the commit;
same machine clock), so it covers commit, publish, the send, and the client's receive.
Every subscriber lives in the bench process: with 1,000 of them the bench's own
receiving is part of the figure (2 cores shared by server, database and clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import (
    Results,
    Server,
    TaskDb,
    future,
    log,
    parse_at,
    percentile,
    pg_database,
    sqlalchemy_pg_url,
    submit_batches,
    task_bodies,
)
from bench.ws_client import LeanSubscriber

TRANSITION_MARK = '"type":"transition"'


class Subscriber:
    """One WebSocket client that keeps (receipt time, frame) for every frame after the first."""

    def __init__(self, ws: ClientConnection, group: SubscriberGroup) -> None:
        self.ws = ws
        self.group = group
        self.frames: list[tuple[float, str]] = []
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                received = time.time()
                text = message if isinstance(message, str) else message.decode()
                self.frames.append((received, text))
                if TRANSITION_MARK in text:
                    self.group.count()


class SubscriberGroup:
    """K subscribers on one server, with a counter of transition frames received by all.

    `lean`: bare-protocol clients (`ws_client.py`, no compression) instead of the
    `websockets` library's, so that with many subscribers the figure is more the server's."""

    def __init__(self, url: str, k: int, compression: str | None, *, lean: bool = False) -> None:
        self.url = url
        self.k = k
        self.compression = compression
        self.lean = lean
        self.subscribers: list[Subscriber | LeanSubscriber] = []
        self.received = 0
        self._target = 0
        self._reached = asyncio.Event()

    def count(self) -> None:
        self.received += 1
        if self._target and self.received >= self._target:
            self._reached.set()

    async def open(self, query: str = "") -> None:
        async def lean() -> LeanSubscriber:
            first: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            frames: list[tuple[float, str]] = []

            def on_text(received: float, text: str) -> None:
                if not first.done():
                    first.set_result(text)  # the snapshot (or the first replayed event)
                    return
                frames.append((received, text))
                if TRANSITION_MARK in text:
                    self.count()

            sub = await LeanSubscriber.connect(self.url + query, on_text)
            sub.frames = frames
            assert (await asyncio.wait_for(first, 60)).startswith("{")
            return sub

        async def one() -> Subscriber | LeanSubscriber:
            if self.lean:
                return await lean()
            ws = await connect(
                self.url + query,
                compression=self.compression,
                max_size=None,
                open_timeout=60,
                ping_interval=None,
            )
            first = await ws.recv()  # the snapshot (or the first replayed event)
            assert isinstance(first, str) and first.startswith("{"), first
            sub = Subscriber(ws, self)
            sub.reader = asyncio.create_task(sub.read())
            return sub

        for start in range(0, self.k, 100):
            batch = await asyncio.gather(*(one() for _ in range(min(100, self.k - start))))
            self.subscribers.extend(batch)

    async def wait_for(self, transitions_each: int, timeout: float = 60) -> None:
        """Until every subscriber has received `transitions_each` transition frames in all."""
        self._target = transitions_each * self.k
        if self.received < self._target:
            self._reached.clear()
            await asyncio.wait_for(self._reached.wait(), timeout)

    def clear(self) -> None:
        for sub in self.subscribers:
            sub.frames.clear()

    def latencies_ms(self) -> list[float]:
        out = []
        for sub in self.subscribers:
            for received, text in sub.frames:
                if TRANSITION_MARK not in text:
                    continue
                event = json.loads(text)
                out.append(1000 * (received - parse_at(event["at"])))
        return out

    async def close(self) -> None:
        for start in range(0, len(self.subscribers), 200):
            part = self.subscribers[start : start + 200]
            await asyncio.gather(
                *(s.close() if isinstance(s, LeanSubscriber) else s.ws.close() for s in part),
                return_exceptions=True,
            )
        readers = [s.reader for s in self.subscribers if isinstance(s, Subscriber) and s.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        self.subscribers.clear()


def database(backend: str, workdir: Path, tag: str) -> contextlib.AbstractAsyncContextManager[str]:
    @contextlib.asynccontextmanager
    async def make() -> Any:
        if backend == "sqlite":
            yield f"sqlite+aiosqlite:///{workdir / f'{tag}-{time.monotonic_ns()}.db'}"
        else:
            async with pg_database(tag) as name:
                yield sqlalchemy_pg_url(name)

    return make()


# -- 4. transition → subscriber ------------------------------------------------------------


async def ws_latency(
    results: Results,
    backend: str,
    workdir: Path,
    *,
    counts: Sequence[int],
    probes: int,
    repeat: int,
    compression: str | None,
    lean: bool = False,
) -> None:
    """demo.noop tasks created one at a time (each makes 5 transitions in a burst); the next
    one only once every subscriber has received all 5 of the previous one."""
    async with database(backend, workdir, "wslat") as url:
        server = Server(url, workdir, f"wslat-{backend}")
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                for k in counts:
                    group = SubscriberGroup(server.ws_url, k, compression, lean=lean)
                    await group.open()
                    try:
                        for rep in range(repeat):
                            group.clear()
                            group.received = 0
                            for probe in range(probes):
                                response = await client.post("/api/v2/tasks", json={"type": "demo.noop"})
                                assert response.status_code == 201, response.text
                                await group.wait_for(5 * (probe + 1))
                                await asyncio.sleep(0.02)
                            lat = group.latencies_ms()
                            assert len(lat) == 5 * probes * k, (len(lat), probes, k)
                            key = f"ws_latency.{backend}.{k}" + (".lean" if lean else "")
                            label = f"transition → subscriber, {k} subscriber(s), {backend}" + (
                                ", lean clients" if lean else ""
                            )
                            results.add(f"{key}.p50_ms", percentile(lat, 50), "ms", f"{label}: p50")
                            results.add(f"{key}.p99_ms", percentile(lat, 99), "ms", f"{label}: p99")
                            log(f"ws latency {backend} k={k} rep {rep}: p50 {percentile(lat, 50):.1f} ms")
                    finally:
                        await group.close()
        finally:
            server.stop()


# -- fan-out and memory per subscriber -----------------------------------------------------


async def fanout(
    results: Results,
    backend: str,
    workdir: Path,
    *,
    k: int,
    probes: int,
    compression: str | None,
    lean: bool = False,
) -> None:
    """k idle subscribers; then `probes` single transitions (a task created with `run_at` a day
    ahead makes exactly one: `queued`), a second apart. Per probe: p50/p99 over the k receipts."""
    async with database(backend, workdir, "fanout") as url:
        server = Server(url, workdir, f"fanout-{backend}")
        await server.start()
        try:
            await asyncio.sleep(1)
            before = server.rss_kib()
            group = SubscriberGroup(server.ws_url, k, compression, lean=lean)
            started = time.monotonic()
            await group.open()
            connect_seconds = time.monotonic() - started
            await asyncio.sleep(2)
            after = server.rss_kib()
            tag = "lean" if lean else "deflate" if compression else "plain"
            kind = "lean clients" if lean else f"{tag} frames"
            key = f"fanout.{backend}.{k}.{tag}"
            label = f"fan-out to {k} idle subscribers ({kind}), {backend}"
            results.add(
                f"{key}.kib_per_subscriber", (after - before) / k, "KiB", f"{label}: RSS per subscriber"
            )
            results.add(f"{key}.connect_s", connect_seconds, "s", f"{label}: time to connect all")
            try:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                    for probe in range(probes):
                        group.clear()
                        response = await client.post(
                            "/api/v2/tasks", json={"type": "demo.noop", "run_at": future()}
                        )
                        assert response.status_code == 201, response.text
                        await group.wait_for(probe + 1, timeout=120)
                        lat = group.latencies_ms()
                        assert len(lat) == k, (len(lat), k)
                        results.add(f"{key}.p50_ms", percentile(lat, 50), "ms", f"{label}: p50")
                        results.add(f"{key}.p99_ms", percentile(lat, 99), "ms", f"{label}: p99")
                        results.add(f"{key}.max_ms", max(lat), "ms", f"{label}: last subscriber")
                        await asyncio.sleep(1)
            finally:
                await group.close()
        finally:
            server.stop()


async def _wrk_get_task(
    results: Results,
    server: Server,
    backend: str,
    workdir: Path,
    ids: Sequence[str],
    connections: int,
    repeat: int,
) -> None:
    paths = [f"/api/v2/tasks/{task_id}" for task_id in ids[:2000]]
    await wrk_load(server.url, paths, connections=connections, seconds=2, workdir=workdir)  # warm-up
    for _ in range(repeat):
        cpu0 = server.cpu_seconds()
        report = await wrk_load(server.url, paths, connections=connections, seconds=10, workdir=workdir)
        cpu = server.cpu_seconds() - cpu0
        if report.non_2xx:
            raise RuntimeError(f"{report.non_2xx} of wrk's GETs were not answered 2xx")
        key = f"api.{backend}.get_task_wrk"
        full = f"GET /tasks/{{id}} driven by wrk, {connections} connections, {backend}"
        results.add(f"{key}.p50_ms", report.p50_ms, "ms", f"{full}: p50")
        results.add(f"{key}.p99_ms", report.p99_ms, "ms", f"{full}: p99")
        results.add(f"{key}.req_per_s", report.req_per_s, "req/s", f"{full}: throughput")
        results.add(
            f"{key}.server_cpu_ms_per_req",
            1000 * cpu / report.requests,
            "ms",
            f"{full}: server CPU per request",
        )


# -- 5. API latency ------------------------------------------------------------------------


async def _load(
    clients: Sequence[httpx.AsyncClient], path_of: Callable[[], str], requests: int
) -> tuple[list[float], float]:
    """Each client (one keep-alive connection each) sends one request at a time."""
    latencies: list[float] = []
    issued = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < requests:
            issued += 1
            path = path_of()
            t = time.perf_counter()
            response = await client.get(path)
            latencies.append(1000 * (time.perf_counter() - t))
            if response.status_code != 200:
                raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    return latencies, requests / (time.perf_counter() - started)


_WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
_WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_WRK_NON_2XX = re.compile(r"^non2xx (\d+)", re.M)
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


class WrkReport(NamedTuple):
    p50_ms: float
    p99_ms: float
    req_per_s: float
    requests: int
    non_2xx: int


async def wrk_load(
    base_url: str, paths: Sequence[str], *, connections: int, seconds: float, workdir: Path
) -> WrkReport:
    """`wrk` (C, one thread) holding `connections` keep-alive connections busy for `seconds`,
    each request to one of `paths` at random, so that the clients do not take the server's
    cores as Python clients do."""
    script = workdir / "wrk-paths.lua"
    listed = ",".join(json.dumps(p) for p in paths)
    script.write_text(
        f"local paths = {{{listed}}}\n"
        "request = function() return wrk.format('GET', paths[math.random(#paths)]) end\n"
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('non2xx %d\\n', summary.errors.status))\n"
        "end\n"
    )
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(script),
        base_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await proc.communicate())[0].decode()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {out}")
    found = {q: float(v) * _WRK_UNITS[unit] for q, v, unit in _WRK_LATENCY.findall(out)}
    requests, rate, bad = (pattern.search(out) for pattern in (_WRK_REQUESTS, _WRK_RATE, _WRK_NON_2XX))
    if "50" not in found or "99" not in found or requests is None or rate is None or bad is None:
        raise RuntimeError(f"could not read wrk's report: {out}")
    return WrkReport(
        found["50"], found["99"], float(rate.group(1)), int(requests.group(1)), int(bad.group(1))
    )


API_HISTORY_PATH = "/api/v2/tasks?state=completed&state=failed&type=demo.noop&q=noop&limit=50"


async def api_latency(
    results: Results,
    backend: str,
    workdir: Path,
    *,
    seeded: int,
    active: int,
    clients: int,
    requests: int,
    repeat: int,
) -> None:
    """`seeded` completed demo.noop tasks and `active` queued ones (run_at a day ahead);
    then `requests` GETs per endpoint from `clients` concurrent httpx clients."""
    async with database(backend, workdir, "api") as url:
        server = Server(url, workdir, f"api-{backend}")
        await server.start()
        where = url.rsplit("/", 1)[1] if backend == "postgres" else url.split(":///", 1)[1]
        try:
            async with contextlib.AsyncExitStack() as stack:
                pool = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(
                            base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=1)
                        )
                    )
                    for _ in range(clients)
                ]
                client = pool[0]
                ids = await submit_batches([client], task_bodies(seeded))
                await submit_batches([client], task_bodies(active, run_at=future()))
                async with TaskDb(backend, where) as db:
                    await db.wait_until(
                        "SELECT count(*) FROM tasks WHERE state = 'completed'", seeded, timeout=600
                    )
                rng = random.Random(7)
                endpoints: list[tuple[str, str, Callable[[], str]]] = [
                    ("get_task", "GET /tasks/{id}", lambda: f"/api/v2/tasks/{rng.choice(ids)}"),
                    ("active", f"GET /tasks/active ({active} active)", lambda: "/api/v2/tasks/active"),
                    ("history", "GET /tasks?state&type&q (history page of 50)", lambda: API_HISTORY_PATH),
                ]
                if shutil.which("wrk"):
                    await _wrk_get_task(results, server, backend, workdir, ids, clients, repeat)
                else:
                    results.skip(
                        f"api.{backend}.get_task_wrk", "wrk is not installed (Debian: apt install wrk)"
                    )
                for name, label, path_of in endpoints:
                    await _load(pool, path_of, 100)  # warm-up
                    for _ in range(repeat):
                        cpu0 = server.cpu_seconds()
                        lat, rate = await _load(pool, path_of, requests)
                        cpu = server.cpu_seconds() - cpu0
                        key = f"api.{backend}.{name}"
                        full = f"{label}, {clients} clients, {backend}"
                        results.add(f"{key}.p50_ms", percentile(lat, 50), "ms", f"{full}: p50")
                        results.add(f"{key}.p99_ms", percentile(lat, 99), "ms", f"{full}: p99")
                        results.add(f"{key}.req_per_s", rate, "req/s", f"{full}: throughput")
                        results.add(
                            f"{key}.server_cpu_ms_per_req",
                            1000 * cpu / requests,
                            "ms",
                            f"{full}: server CPU per request",
                        )
        finally:
            server.stop()
