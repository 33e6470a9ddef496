"""The soak test: ordinary concurrent use under every failure at once, then a full audit.

Three `taskstate serve` processes on one database keep about 50 jobs of every
kind running for about 30 s (progress and logs, questions answered by a person,
checkpoints, failures, cancels, a service stopped), while one instance is
SIGKILLed and restarted, another SIGSTOPped past the orphan timeout and resumed,
a third stopped gracefully while it claims and restarted, and (on PostgreSQL)
the database's connections are terminated now and then. A WebSocket subscriber
follows it all, reconnecting with `since` to whichever instance is up.

Then, for every task: the database (the task, its transition rows, its log)
equals what the job itself did (its journal, written outside the service) and
what the subscriber received, and no attempt of a task ran while another
attempt of it was running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from taskstate.core.states import TERMINAL_STATES, can_transition
from tests.support.databases import database_name, terminate_connections
from tests.support.processes import ServerProcess
from tests.support.readers import read_journal

pytestmark = pytest.mark.timeout(300)

LOAD_SECONDS = 30
ACTIVE = 50
ORPHAN_AFTER = 2.0
MODES = ("work", "work", "ask", "checkpoint", "fail", "cancel", "serve")
TERMINAL = {s.value for s in TERMINAL_STATES}


class Unreachable(Exception):
    pass


@dataclass
class Cluster:
    procs: list[ServerProcess]
    up: set[int] = field(default_factory=set)
    clients: dict[int, httpx.AsyncClient] = field(default_factory=dict)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Ask any instance that is up; another one if it fails or answers 503."""
        deadline = time.monotonic() + 30
        while True:
            for i in random.sample(sorted(self.up), len(self.up)):
                if i not in self.clients:
                    self.clients[i] = httpx.AsyncClient(base_url=self.procs[i].url, timeout=3)
                try:
                    response = await self.clients[i].request(method, path, **kwargs)
                except httpx.TransportError:
                    await self.clients.pop(i).aclose()
                    continue
                if response.status_code != 503:
                    return response
            if time.monotonic() > deadline:
                raise Unreachable(f"{method} {path}: no instance answered for 30 s")
            await asyncio.sleep(0.1)


@dataclass
class Subscriber:
    """Follows the event stream, reconnecting with `since` to whichever instance is up."""

    cluster: Cluster
    events: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int | None = None
    reconnects: int = 0

    async def run(self, connected: asyncio.Event) -> None:
        while True:
            candidates = sorted(self.cluster.up)
            if not candidates:
                await asyncio.sleep(0.1)
                continue
            proc = self.cluster.procs[random.choice(candidates)]
            url = proc.url.replace("http://", "ws://") + "/api/v2/events"
            if self.last_seq is not None:
                url += f"?since={self.last_seq}"
            try:
                async with websockets.connect(
                    url, open_timeout=3, max_size=None, ping_interval=1, ping_timeout=2
                ) as ws:
                    async for raw in ws:
                        event = json.loads(raw)
                        if event["type"] == "snapshot":
                            assert self.last_seq is None, "a snapshot after a reconnect with since"
                            self.last_seq = event["seq"]
                            connected.set()
                        elif event["type"] == "transition":
                            assert self.last_seq is not None and event["seq"] > self.last_seq, (
                                f"seq {event['seq']} after {self.last_seq}: doubled or out of order"
                            )
                            self.last_seq = event["seq"]
                            self.events.append(event)
                        elif event["type"] == "resync":
                            break
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                pass
            self.reconnects += 1
            await asyncio.sleep(0.05)


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = {
        "TASKSTATE_ORPHAN_AFTER_SECONDS": ORPHAN_AFTER,
        "TASKSTATE_HEARTBEAT_SECONDS": 0.5,
        "TASKSTATE_SHUTDOWN_GRACE_SECONDS": 1,
        "TASKSTATE_CANCEL_GRACE_SECONDS": 1,
        "TASKSTATE_PROGRESS_FLUSH_SECONDS": 0.1,
        "MAX_CONCURRENT_TASKS": 25,
    }
    procs = [ServerProcess(database_url, tmp_path, **settings) for _ in range(3)]
    try:
        await procs[0].start()  # migrates the database (SQLite); the others then start side by side
        await asyncio.gather(*(p.start() for p in procs[1:]))
        cluster = Cluster(procs, {0, 1, 2})
        yield cluster
        for client in cluster.clients.values():
            await client.aclose()
    finally:
        for proc in procs:
            proc.stop_quietly()


@dataclass
class Load:
    """What the test asked for, per task: the mode, and what a person did to it."""

    journal: Path
    modes: dict[str, str] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    cancel_requested: set[str] = field(default_factory=set)
    stop_requested: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)

    def body(self) -> dict[str, Any]:
        mode = random.choice(MODES)
        steps = {"cancel": 400, "checkpoint": random.randint(15, 30)}.get(mode, random.randint(5, 25))
        return {
            "type": "test.soak_service" if mode == "serve" else "test.soak",
            "params": {"journal": str(self.journal), "mode": mode, "steps": steps, "delay": 0.1},
            "max_attempts": 10,
        }


async def keep_busy(cluster: Cluster, load: Load, until: float) -> None:
    """About ACTIVE tasks running or waiting at any time, created in small batches."""
    while time.monotonic() < until:
        active = [t for t in load.modes if t not in load.done]
        if len(active) < ACTIVE:
            bodies = [load.body() for _ in range(min(10, ACTIVE - len(active)))]
            response = await cluster.request("POST", "/api/v2/tasks/batch", json={"tasks": bodies})
            assert response.status_code == 201, response.text
            for body, task in zip(bodies, response.json()["items"], strict=True):
                load.modes[task["id"]] = body["params"]["mode"]
                load.steps[task["id"]] = body["params"]["steps"]
        await asyncio.sleep(0.3)
        active_now = (await cluster.request("GET", "/api/v2/tasks/active")).json()["items"]
        still = {t["id"] for t in active_now}
        load.done |= {t for t in load.modes if t not in still}


async def person(cluster: Cluster, load: Load) -> None:
    """Answers questions, cancels what asks to be cancelled (and some work at random, racing
    its completion), stops services once they serve."""
    while True:
        await asyncio.sleep(random.uniform(0.2, 0.6))
        # A request that ends in a transport error or a 503 is tried again by `request`; a
        # person whose request could not be made at all tries again next time round.
        with contextlib.suppress(Unreachable):
            pending = (await cluster.request("GET", "/api/v2/questions")).json()["items"]
            for question in pending:
                task_id, qid = question["task_id"], question["id"]
                answer = load.answers.setdefault(task_id, random.choice(["yes", "no"]))
                path = f"/api/v2/tasks/{task_id}/questions/{qid}/answer"
                response = await cluster.request("POST", path, json={"answer": answer})
                assert response.status_code in (200, 409), response.text
            active = (await cluster.request("GET", "/api/v2/tasks/active")).json()["items"]
            for task in active:
                task_id, mode = task["id"], load.modes.get(task["id"])
                cancel = mode == "cancel" and task["state"] == "running" and random.random() < 0.3
                cancel |= mode == "work" and task["progress"] > 80 and random.random() < 0.1
                if cancel:
                    load.cancel_requested.add(task_id)
                    response = await cluster.request("POST", f"/api/v2/tasks/{task_id}/cancel")
                    assert response.status_code in (200, 409), response.text
                if mode == "serve" and task["state"] == "serving" and random.random() < 0.3:
                    load.stop_requested.add(task_id)
                    response = await cluster.request("POST", f"/api/v2/tasks/{task_id}/stop")
                    assert response.status_code in (200, 409), response.text


async def chaos(cluster: Cluster, pg_database: str | None) -> list[str]:
    """SIGKILL, SIGSTOP past the orphan timeout, a graceful stop while claiming; on
    PostgreSQL, terminated connections throughout. Answers what it did, for the report."""
    done: list[str] = []
    a, b, c = cluster.procs
    killer = asyncio.create_task(_terminate_connections(pg_database, done)) if pg_database else None
    try:
        await asyncio.sleep(6)
        cluster.up.discard(0)
        await a.kill()
        done.append("SIGKILL instance 0")
        await asyncio.sleep(2)
        await a.start()
        cluster.up.add(0)
        await asyncio.sleep(3)
        cluster.up.discard(1)
        b.pause()
        done.append("SIGSTOP instance 1")
        await asyncio.sleep(ORPHAN_AFTER + 2)
        b.resume()
        cluster.up.add(1)
        done.append("SIGCONT instance 1")
        await asyncio.sleep(3)
        cluster.up.discard(2)
        assert await c.terminate() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        done.append("SIGTERM instance 2")
        await c.start()
        cluster.up.add(2)
    finally:
        if killer is not None:
            killer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await killer
    return done


async def _terminate_connections(database: str, done: list[str]) -> None:
    while True:
        await asyncio.sleep(random.uniform(2, 4))
        killed = await terminate_connections(database)
        done.append(f"terminated {killed} connections")


async def test_soak(cluster: Cluster, database_url: str, tmp_path: Path) -> None:
    load = Load(tmp_path / "journal.jsonl")
    subscriber = Subscriber(cluster)
    connected = asyncio.Event()
    following = asyncio.create_task(subscriber.run(connected))
    await asyncio.wait_for(connected.wait(), 10)
    pg_database = None if database_url.startswith("sqlite") else database_name(database_url)
    acting = asyncio.create_task(person(cluster, load))
    try:
        until = time.monotonic() + LOAD_SECONDS
        _, chaos_log = await asyncio.gather(keep_busy(cluster, load, until), chaos(cluster, pg_database))
        # Wind down: what still runs is cancelled or stopped, then everything must end.
        deadline = time.monotonic() + 60
        while active := (await cluster.request("GET", "/api/v2/tasks/active")).json()["items"]:
            if acting.done():  # the person gave up: say why, rather than wait for questions
                acting.result()
            assert time.monotonic() < deadline, f"still active 60 s after the load: {active[:5]}"
            for task in active:
                if task["state"] in ("running", "serving") and load.modes[task["id"]] in ("cancel", "serve"):
                    load.cancel_requested.add(task["id"])
                    await cluster.request("POST", f"/api/v2/tasks/{task['id']}/cancel")
            await asyncio.sleep(0.5)
        latest = 0
        for task_id in load.modes:
            rows = (await cluster.request("GET", f"/api/v2/tasks/{task_id}/transitions")).json()["items"]
            latest = max(latest, rows[-1]["seq"])
        async with asyncio.timeout(20):
            while subscriber.last_seq is None or subscriber.last_seq < latest:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        for task in (acting, following):
            task.cancel()
        await asyncio.gather(acting, following, return_exceptions=True)
    journal = read_journal(load.journal)
    await audit(cluster, load, subscriber, journal)
    modes = defaultdict(int)
    for mode in load.modes.values():
        modes[mode] += 1
    assert len(load.modes) >= 150, f"only {len(load.modes)} tasks in {LOAD_SECONDS} s"
    assert subscriber.reconnects >= 1, "the subscriber never had to reconnect: the test proved less"
    restarted = sum(1 for e in journal if e["attempt"] > 1 and e["event"] == "start")
    assert restarted > 0, f"no task was re-run after the failures ({chaos_log}): the test proved less"
    print(f"soak: {len(load.modes)} tasks {dict(modes)}; {restarted} re-run attempts; {chaos_log}")


async def audit(cluster: Cluster, load: Load, subscriber: Subscriber, journal: list[dict[str, Any]]) -> None:
    """Every task, every row, every line, against the journal and the subscriber."""
    received: dict[str, list[tuple[int, str | None, str]]] = defaultdict(list)
    for event in subscriber.events:
        received[event["task_id"]].append((event["seq"], event["from"], event["to"]))
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in journal:
        by_task[entry["task"]].append(entry)
    for task_id, mode in load.modes.items():
        task = (await cluster.request("GET", f"/api/v2/tasks/{task_id}")).json()
        rows = (await cluster.request("GET", f"/api/v2/tasks/{task_id}/transitions")).json()["items"]
        logs = (await cluster.request("GET", f"/api/v2/tasks/{task_id}/logs?after=0")).json()["items"]
        path = [(r["to_state"], r["reason"]) for r in rows]
        where = f"task {task_id} ({mode}, error {task['error']!r}): {path}"
        entries = by_task[task_id]

        # The rows: one path through the table, from birth to where the task is now.
        assert rows[0]["from_state"] is None and rows[0]["to_state"] == "queued", where
        for before, after in itertools.pairwise(rows):
            assert after["from_state"] == before["to_state"], where
            assert can_transition(after["from_state"], after["to_state"]), where
            assert after["seq"] > before["seq"], where
        assert rows[-1]["to_state"] == task["state"] and task["state"] in TERMINAL, where
        # What a subscriber received: exactly the rows, once each, in order.
        assert received[task_id] == [(r["seq"], r["from_state"], r["to_state"]) for r in rows], where

        # The outcome is the one the job and the person made.
        steps = load.steps[task_id]
        if mode in ("work", "checkpoint", "ask"):
            expected = {"completed", "cancelled"} if task_id in load.cancel_requested else {"completed"}
            assert task["state"] in expected, where
        if mode == "fail":
            assert task["state"] == "failed" and task["error"] == "soak failure", where
        if mode in ("cancel", "serve"):
            assert task["state"] in ("cancelled", "completed", "failed"), where
            if task["state"] == "completed":
                assert mode == "serve" and task_id in load.stop_requested, where
            if task["state"] == "failed":
                # `stopping` has no way back to the queue: a service whose worker was lost, or
                # whose instance stopped, before it had shut down has failed (CONTRACT §1).
                assert mode == "serve" and task["reason"] in ("worker_lost", "server_restart"), where
        if task["state"] == "completed":
            assert task["progress"] == 100, where
            if mode != "serve":
                assert task["result"]["steps"] == steps, where
            if mode == "ask":
                assert task["result"]["answer"] == load.answers[task_id], where

        # Each run of the job is an attempt in one process ("attempt.pid": a graceful stop
        # hands a task back without using an attempt, so one attempt may run twice).
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in entries:
            if entry["event"] != "cleanup":
                runs[f"{entry['attempt']}.{entry['pid']}"].append(entry)
        # No two runs at once: each one's work ends before the next one's starts (a run stopped
        # because it lost its task may still clean up what is its own).
        spans = sorted((min(e["at"] for e in es), max(e["at"] for e in es), run) for run, es in runs.items())
        for (_, end, run), (start, _, then) in itertools.pairwise(spans):
            assert end < start, f"{where}: run {run} still worked when run {then} started"
        ordered = [run for _, _, run in spans]
        assert [int(run.split(".")[0]) for run in ordered] == sorted(
            int(run.split(".")[0]) for run in ordered
        ), where
        assert task["attempt"] >= max((e["attempt"] for e in entries), default=1), where
        if task["state"] == "completed" and mode == "checkpoint":
            # Resumed from its last checkpoint, never from 0, when a later run finished it.
            # (A run that resumed after the last step's checkpoint has no step left to take.)
            last_steps = [e["step"] for e in runs[ordered[-1]] if e["event"] == "step"]
            assert task["result"]["from"] == (min(last_steps) if last_steps else steps + 1), where

        # The log: one numbering, run after run; each run's lines are the steps it journaled
        # (all of them for the run that finished the task; a prefix for one cut short).
        assert [line["seq"] for line in logs] == list(range(1, len(logs) + 1)), where
        stored: dict[str, list[str]] = defaultdict(list)
        order: list[str] = []
        for line in logs:
            run = line["message"].split()[1]
            stored[run].append(line["message"])
            if not order or order[-1] != run:
                order.append(run)
        assert order == [run for run in ordered if run in stored], (
            f"{where}: runs' lines out of order: {order}"
        )
        for run, lines in stored.items():
            did = [f"run {run} step {e['step']}" for e in runs[run] if e["event"] == "step"]
            assert lines == did[: len(lines)], f"{where}: run {run} stored {lines}, did {did}"
        if task["state"] in ("completed", "failed") and task["reason"] != "attempts_exhausted":
            final = ordered[-1]
            did = [f"run {final} step {e['step']}" for e in runs[final] if e["event"] == "step"]
            assert stored[final] == did, f"{where}: the finishing run's log differs from its work"
