"""The `taskstate` command line for people, run as a real subprocess against a real server.

`python -m taskstate submit|status|watch|cancel|tasks|workers` talks to an in-process uvicorn
(`live_server`) or to `taskstate serve` in a subprocess (`ServerProcess`); the server is never
faked. The CLI runs through `asyncio.create_subprocess_exec`, so that the in-process server
keeps serving while a command waits on it. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from taskstate.core.db import open_database
from taskstate.core.migrations import current_revision, head_revision
from taskstate.web import auth
from tests.support.processes import REPO, ServerProcess, free_port, wait_ready
from tests.support.servers import LiveServer, live_server, make_settings

CLI_TIMEOUT = 60.0
FAR_FUTURE = "2999-01-01T00:00:00Z"
TRANSITION_LINE = re.compile(r"^\d\d:\d\d:\d\d  (?P<id>[0-9a-f]{8})\b.*  (?P<from>[a-z-]+) -> (?P<to>[a-z]+)")
PROGRESS_LINE = re.compile(r"\[[#.]{30}\]\s+(?P<pct>\d+\.\d)%")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKSTATE_", "DATABASE_URL"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


async def cli(*args: str, url: str | None, timeout: float = CLI_TIMEOUT, **env: str) -> Result:
    """Run `python -m taskstate ARGS --url URL` to its end (bounded) and answer what it did."""
    argv = [sys.executable, "-m", "taskstate", *args]
    if url is not None:
        argv += ["--url", url]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=cli_env(**env),
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(
            f"`taskstate {' '.join(args)}` still running after {timeout}s\nstdout:\n{out.decode()}\n"
            f"stderr:\n{err.decode()}"
        ) from None
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


class Streaming:
    """A long-running CLI command (`watch`), read line by line while it runs."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def next_line(self, within: float = 20) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            raw = await self.process.stdout.readline()
        if not raw:
            err = await self._stderr()
            raise AssertionError(f"the command ended (rc={self.process.returncode}); stderr:\n{err}")
        line = raw.decode().rstrip("\n")
        self.lines.append(line)
        return line

    async def json_until(self, predicate: Any, within: float = 30) -> list[dict[str, Any]]:
        """Read JSON lines until one satisfies `predicate`; answers every one read."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while True:
                event = json.loads(await self.next_line(within))
                seen.append(event)
                if predicate(event):
                    return seen

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        try:
            async with asyncio.timeout(5):
                return (await self.process.stderr.read()).decode()
        except TimeoutError:
            return "(no stderr within 5 s)"

    async def stop(self, sig: int = signal.SIGINT, within: float = 15) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"the command did not stop within {within}s of signal {sig}") from None


async def start_streaming(*args: str, url: str) -> Streaming:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskstate",
        *args,
        "--url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=cli_env(),
    )
    return Streaming(process)


@pytest.fixture
async def sqlite_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """One backend is enough for what only concerns the command line."""
    async with live_server(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")) as live:
        yield live


def transition_pairs(text: str, task_id: str) -> list[tuple[str | None, str]]:
    pairs: list[tuple[str | None, str]] = []
    for line in text.splitlines():
        match = TRANSITION_LINE.match(line)
        if match and match["id"] == task_id[:8]:
            pairs.append((None if match["from"] == "-" else match["from"], match["to"]))
    return pairs


# -- submit, status, tasks, cancel, workers, on both backends ----------------------------------


async def test_submit_status_tasks_cancel_workers(server: LiveServer) -> None:
    url = server.base_url
    submitted = await cli(
        "submit",
        "demo.sleep",
        "--param",
        "seconds=0.3",
        "-p",
        "steps=3",
        "--name",
        "cli job",
        "--priority",
        "7",
        "--json",
        url=url,
    )
    assert submitted.code == 0, submitted.err
    task = submitted.json()
    assert task["type"] == "demo.sleep"
    assert task["name"] == "cli job"
    assert task["priority"] == 7
    assert task["params"] == {"seconds": 0.3, "steps": 3}
    assert task["trigger"] == "manual"
    assert task["trigger_source"] == "cli"
    # The server agrees with what the CLI printed.
    assert (await server.get(task["id"]))["name"] == "cli job"
    await server.wait_for(task["id"])

    status = await cli("status", task["id"], "--json", url=url)
    assert status.code == 0, status.err
    assert status.json()["state"] == "completed"
    assert status.json()["result"] == {"slept": 0.3, "steps": 3}
    text = await cli("status", task["id"], url=url)
    assert text.code == 0, text.err
    assert re.search(rf"^id\s+{task['id']}$", text.out, re.M), text.out
    assert re.search(r"^state\s+completed\b", text.out, re.M), text.out
    assert "100.0%" in text.out

    plain = await cli("submit", "demo.noop", url=url)
    assert plain.code == 0, plain.err
    match = re.fullmatch(r"submitted ([0-9a-f-]{36})  \(demo\.noop, queued\)\n", plain.out)
    assert match, plain.out
    noop_id = match[1]
    await server.wait_for(noop_id)

    history = await cli("tasks", "--json", "--state", "completed", "--type", "demo.sleep", url=url)
    assert history.code == 0, history.err
    assert [t["id"] for t in history.json()["items"]] == [task["id"]]
    assert history.json()["total"] == 1
    none_failed = await cli("tasks", "--json", "--state", "failed", url=url)
    assert none_failed.json()["items"] == []
    limited = await cli("tasks", "--json", "--limit", "1", url=url)
    assert [t["id"] for t in limited.json()["items"]] == [noop_id]  # newest first
    assert limited.json()["next_cursor"] is not None
    table = await cli("tasks", url=url)
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "NAME", "STATE", "PROGRESS", "CREATED", "DURATION"]
    assert lines[1].startswith(noop_id) and "completed" in lines[1]
    assert lines[2].startswith(task["id"]) and "cli job" in lines[2]
    assert lines[-1] == "2 of 2 tasks"

    service = await server.create("demo.serve")
    await server.wait_for(service["id"], "serving")
    cancelled = await cli("cancel", service["id"], url=url)
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out == f"{service['id']}: cancelled\n"
    assert (await server.get(service["id"]))["state"] == "cancelled"
    again = await cli("cancel", service["id"], "--json", url=url)
    assert again.code == 0 and again.json()["state"] == "cancelled"

    workers = await cli("workers", "--json", url=url)
    assert workers.code == 0, workers.err
    api_workers = (await server.client.get("/api/v2/workers")).json()["items"]
    assert [w["id"] for w in workers.json()["items"]] == [w["id"] for w in api_workers]
    worker_table = await cli("workers", url=url)
    assert worker_table.out.splitlines()[0].split()[:4] == ["ID", "HOST", "PID", "STATE"]
    assert any(line.startswith(api_workers[0]["id"]) for line in worker_table.out.splitlines()[1:])


async def test_param_values_are_json_when_they_parse(sqlite_server: LiveServer) -> None:
    result = await cli(
        "submit",
        "test.echo",
        "--json",
        "-p",
        "n=5",
        "-p",
        "x=2.5",
        "-p",
        "flag=true",
        "-p",
        "nothing=null",
        "-p",
        "list=[1, 2]",
        "-p",
        'obj={"a": {"b": 1}}',
        "-p",
        "word=hello",
        "-p",
        'quoted="5"',
        "-p",
        "spaces=two words",
        "-p",
        "empty=",
        "-p",
        "eq=a=b",
        "-p",
        "nan=NaN",
        url=sqlite_server.base_url,
    )
    assert result.code == 0, result.err
    expected = {
        "n": 5,
        "x": 2.5,
        "flag": True,
        "nothing": None,
        "list": [1, 2],
        "obj": {"a": {"b": 1}},
        "word": "hello",
        "quoted": "5",
        "spaces": "two words",
        "empty": "",
        "eq": "a=b",
        "nan": "NaN",  # not JSON: a string
    }
    assert result.json()["params"] == expected
    done = await sqlite_server.wait_for(result.json()["id"])
    assert done["result"] == expected  # test.echo returns its params: they reached the job as typed


# -- errors -----------------------------------------------------------------------------------


async def test_server_errors_go_to_stderr_with_a_non_zero_exit(sqlite_server: LiveServer) -> None:
    url = sqlite_server.base_url
    missing = str(uuid.uuid4())
    for args in (["status", missing], ["cancel", missing], ["watch", missing], ["status", missing, "--json"]):
        result = await cli(*args, url=url)
        assert result.code == 1, (args, result)
        assert result.out == ""
        assert result.err.startswith("taskstate: error: 404 Not Found: not_found: "), result.err
        assert missing in result.err

    unknown = await cli("submit", "no.such.type", url=url)
    assert unknown.code == 1
    assert "422" in unknown.err and "unknown_task_type" in unknown.err and "no.such.type" in unknown.err

    bad_params = await cli("submit", "demo.sleep", "-p", "seconds=soon", url=url)
    assert bad_params.code == 1
    assert "validation_error" in bad_params.err
    assert re.search(r"^  seconds: .*valid number", bad_params.err, re.M), bad_params.err

    done = await sqlite_server.create("demo.noop")
    await sqlite_server.wait_for(done["id"])
    refused = await cli("cancel", done["id"], url=url)
    assert refused.code == 1
    assert "409 Conflict: invalid_transition" in refused.err and "from=completed" in refused.err

    bad_limit = await cli("tasks", "--limit", "100000", url=url)
    assert bad_limit.code == 1 and "validation_error" in bad_limit.err and "limit" in bad_limit.err

    usage = await cli("submit", "demo.noop", "-p", "no-equals-sign", url=url)
    assert usage.code == 2
    assert "expected KEY=VALUE" in usage.err
    # Nothing was created by the refused commands.
    assert (await sqlite_server.client.get("/api/v2/tasks")).json()["total"] == 1


async def test_unreachable_server_is_exit_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["status", str(uuid.uuid4())], ["tasks"], ["workers", "--json"], ["watch"]):
        result = await cli(*args, url=url, timeout=30)
        assert result.code == 3, (args, result)
        assert result.err.startswith(f"taskstate: error: cannot reach the server at {url}"), result.err


async def test_url_from_the_environment(sqlite_server: LiveServer) -> None:
    # No --url: TASKSTATE_URL decides.
    result = await cli(
        "submit", "demo.noop", "--wait", "--json", url=None, TASKSTATE_URL=sqlite_server.base_url
    )
    assert result.code == 0, result.err
    assert result.json()["state"] == "completed"
    assert (await sqlite_server.get(result.json()["id"]))["state"] == "completed"


async def test_tokens_on_http_and_on_the_websocket(tmp_path: Path) -> None:
    """With TASKSTATE_AUTH=tokens: --token (or TASKSTATE_TOKEN) goes as a bearer header on HTTP
    and as ?token= on the WebSocket; a missing or weak token is a clear error, exit 1."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}", auth="tokens")
    async with live_server(settings) as server:
        _, operator = await auth.create_token(server.services.store, "ops", auth.Role.OPERATOR)
        _, viewer = await auth.create_token(server.services.store, "eyes", auth.Role.VIEWER)
        url = server.base_url

        anonymous = await cli("tasks", url=url)
        assert anonymous.code == 1
        assert anonymous.err.startswith("taskstate: error: 401 Unauthorized: unauthorized"), anonymous.err
        anonymous_watch = await cli("watch", url=url, timeout=30)
        assert anonymous_watch.code == 1
        assert "unauthorized" in anonymous_watch.err, anonymous_watch.err

        # --wait follows the task over the WebSocket: that only works if ?token= is accepted.
        done = await cli("submit", "demo.noop", "--wait", "--json", "--token", operator, url=url)
        assert done.code == 0, done.err
        assert done.json()["state"] == "completed"
        task_id = done.json()["id"]
        watched = await cli("watch", task_id, url=url, TASKSTATE_TOKEN=operator)
        assert watched.code == 0, watched.err
        assert ("collecting", "completed") in transition_pairs(watched.out, task_id)

        weak = await cli("submit", "demo.noop", "--token", viewer, url=url)
        assert weak.code == 1
        assert weak.err.startswith("taskstate: error: 403 Forbidden: forbidden"), weak.err
        theirs = await cli("status", task_id, "--token", viewer, url=url)
        assert theirs.code == 1 and "403" in theirs.err
        mine = await cli("tasks", "--json", url=url, TASKSTATE_TOKEN=operator)
        assert [t["id"] for t in mine.json()["items"]] == [task_id]


# -- watch ------------------------------------------------------------------------------------


async def test_watch_id_prints_transitions_and_progress_and_ends(server: LiveServer) -> None:
    task = await server.create("demo.sleep", params={"seconds": 4, "steps": 8}, name="watched")
    result = await cli("watch", task["id"], "--token", "abc", url=server.base_url, timeout=60)
    assert result.code == 0, result.err
    rows = await server.transitions(task["id"])
    assert transition_pairs(result.out, task["id"]) == [(r["from_state"], r["to_state"]) for r in rows]
    assert rows[-1]["to_state"] == "completed"
    progress = [float(m["pct"]) for m in PROGRESS_LINE.finditer(result.out)]
    assert progress, result.out
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert "watched  completed after" in result.out
    assert result.out.rstrip().endswith('result {"slept": 4.0, "steps": 8}')

    # Watching a task that has already ended prints its history and returns at once.
    again = await cli("watch", task["id"], "--json", url=server.base_url, timeout=30)
    assert again.code == 0, again.err
    events = [json.loads(line) for line in again.out.splitlines()]
    assert [e["seq"] for e in events] == [r["seq"] for r in rows]
    assert all(e["type"] == "transition" for e in events)


async def test_watch_on_a_terminal_redraws_one_progress_bar(sqlite_server: LiveServer) -> None:
    """On a TTY the bar is one line redrawn in place (CR, erase line); transitions go above it."""
    master, slave = os.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskstate",
        "submit",
        "demo.sleep",
        "-p",
        "seconds=2",
        "-p",
        "steps=4",
        "--wait",
        "--url",
        sqlite_server.base_url,
        stdout=slave,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=cli_env(),
    )
    os.close(slave)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    try:
        async with asyncio.timeout(CLI_TIMEOUT):
            screen, code = await asyncio.gather(asyncio.to_thread(read_all), process.wait())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)
    assert code == 0, screen
    text = screen.decode()
    redraws = re.findall(r"\r\x1b\[2K[0-9a-f]{8} demo\.sleep  \[[#.]{30}\]", text)
    assert len(redraws) >= 2, text
    assert "\r\x1b[2K" in text.split("collecting -> completed")[0]  # the bar was erased first
    assert "completed after" in text


async def test_submit_wait_reports_the_outcome(sqlite_server: LiveServer) -> None:
    url = sqlite_server.base_url
    failed = await cli("submit", "demo.fail", "-p", "message=it broke", "--wait", url=url)
    assert failed.code == 4, failed
    task_id = failed.out.split()[1]
    assert transition_pairs(failed.out, task_id)[-1] == ("running", "failed")
    assert "failed after" in failed.out and "it broke" in failed.out

    ok = await cli("submit", "demo.sleep", "-p", "seconds=0.5", "-p", "steps=2", "--wait", "--json", url=url)
    assert ok.code == 0, ok.err
    final = ok.json()  # one JSON document: the task once it has ended
    assert final["state"] == "completed" and final["is_terminal"] is True
    assert final == await sqlite_server.get(final["id"])


async def test_watch_all_follows_new_tasks_until_interrupted(sqlite_server: LiveServer) -> None:
    active = await sqlite_server.create("demo.serve", name="already up")
    await sqlite_server.wait_for(active["id"], "serving")
    watch = await start_streaming("watch", "--json", url=sqlite_server.base_url)
    try:
        snapshot = json.loads(await watch.next_line())
        assert snapshot["type"] == "snapshot"
        assert [t["id"] for t in snapshot["tasks"]] == [active["id"]]
        task = await sqlite_server.create("demo.noop")
        events = await watch.json_until(
            lambda e: e.get("task_id") == task["id"] and e.get("to") == "completed"
        )
        seqs = [e["seq"] for e in events if e["type"] == "transition"]
        rows = await sqlite_server.transitions(task["id"])
        assert seqs == [r["seq"] for r in rows]
        assert all(s > snapshot["seq"] for s in seqs)
        code = await watch.stop(signal.SIGINT)
        assert code == 130
    finally:
        if watch.process.returncode is None:
            watch.process.kill()
            await watch.process.wait()


async def test_watch_shows_every_task_of_a_snapshot_in_parts(sqlite_server: LiveServer) -> None:
    """800 active tasks are more than one snapshot message (256 KiB each): `watch` shows the
    tasks of every part, not only of the first."""
    names: set[str] = set()
    for start in (0, 400):
        batch = [
            {"type": "demo.noop", "name": f"t{i:04d}", "run_at": FAR_FUTURE}
            for i in range(start, start + 400)
        ]
        response = await sqlite_server.client.post("/api/v2/tasks/batch", json={"tasks": batch})
        assert response.status_code == 201, response.text[:300]
        names.update(t["name"] for t in batch)
    watch = await start_streaming("watch", url=sqlite_server.base_url)
    try:
        shown: set[str] = set()
        async with asyncio.timeout(30):
            while shown != names:
                shown.update(re.findall(r"\bt\d{4}\b", await watch.next_line()))
        assert await watch.stop(signal.SIGINT) == 130
    finally:
        if watch.process.returncode is None:
            watch.process.kill()
            await watch.process.wait()


async def test_watch_reconnects_with_since_and_misses_nothing(tmp_path: Path) -> None:
    """The server is killed and restarted under a running `watch`: every transition recorded,
    including those committed while it was disconnected, is printed once, in seq order."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'watch.db'}", tmp_path)
    await server.start()
    watch: Streaming | None = None
    try:
        watch = await start_streaming("watch", "--json", "--reconnect-for", "60", url=server.url)
        assert json.loads(await watch.next_line())["type"] == "snapshot"
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            body = {"type": "demo.sleep", "params": {"seconds": 120, "steps": 120}}
            first_id = (await client.post("/api/v2/tasks", json=body)).json()["id"]
            await watch.json_until(lambda e: e.get("task_id") == first_id and e.get("to") == "running")
        await server.kill()
        await server.start()  # the same port and database; the lost task is orphaned and re-queued
        await watch.json_until(
            lambda e: (
                e.get("task_id") == first_id and e.get("from") == "orphaned" and e.get("to") == "queued"
            ),
            within=60,
        )
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            second = await client.post("/api/v2/tasks", json={"type": "demo.noop"})
            second_id = second.json()["id"]
            await watch.json_until(
                lambda e: e.get("task_id") == second_id and e.get("to") == "completed", within=60
            )
            cancel = await client.post(f"/api/v2/tasks/{first_id}/cancel")
            assert cancel.status_code == 200, cancel.text
            await watch.json_until(lambda e: e.get("task_id") == first_id and e.get("to") == "cancelled")
            recorded = [
                row["seq"]
                for task_id in (first_id, second_id)
                for row in (await client.get(f"/api/v2/tasks/{task_id}/transitions")).json()["items"]
            ]
        printed = [json.loads(line) for line in watch.lines[1:]]
        seqs = [e["seq"] for e in printed if e["type"] == "transition"]
        assert seqs == sorted(set(seqs)), "a transition was printed twice or out of order"
        assert seqs == sorted(recorded), "the printed transitions differ from the recorded ones"
        first_path = [e["to"] for e in printed if e.get("task_id") == first_id and e["type"] == "transition"]
        assert "orphaned" in first_path and first_path[-1] == "cancelled"
        assert await watch.stop(signal.SIGINT) == 130
    finally:
        if watch is not None and watch.process.returncode is None:
            watch.process.kill()
            await watch.process.wait()
        server.stop_quietly()


async def test_ctrl_c_stops_watch_at_once_even_while_it_reconnects(tmp_path: Path) -> None:
    """The server is gone and `watch` keeps trying to reconnect: one Ctrl-C still ends it
    with 130, at once (the flake of issue 12, item 11, ended a watch that did not stop)."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'watch.db'}", tmp_path)
    await server.start()
    watch: Streaming | None = None
    try:
        watch = await start_streaming("watch", "--json", "--reconnect-for", "60", url=server.url)
        assert json.loads(await watch.next_line())["type"] == "snapshot"
        await server.kill()
        for pause in (0.3, 0.7, 1.1):  # at several points of the reconnect loop's back-off
            await asyncio.sleep(pause)
        started = time.monotonic()
        assert await watch.stop(signal.SIGINT, within=5) == 130
        assert time.monotonic() - started < 3
    finally:
        if watch is not None and watch.process.returncode is None:
            watch.process.kill()
            await watch.process.wait()
        server.stop_quietly()


# -- workflows: submit --depends-on / --requires-approval, tree, schedules ----------------------

TREE_LINE = re.compile(
    r"^(?P<indent>(?:[│ ]  )*(?:[├└]─ )?)(?P<name>.+?)\s{2,}(?P<state>[a-z]+)\s+\[[#.]{12}\]\s+"
    r"(?P<pct>\d+\.\d)%  (?P<id>[0-9a-f]{8})(?:  (?P<note>.*))?$"
)


def tree_rows(text: str) -> list[dict[str, str]]:
    return [m.groupdict() for line in text.splitlines() if (m := TREE_LINE.match(line))]


async def history_until(
    server: LiveServer, params: dict[str, str], enough: Any, timeout: float = 15
) -> list[dict[str, Any]]:
    """Poll the history with `params` until `enough(items)`; answers the items."""
    async with asyncio.timeout(timeout):
        while True:
            items: list[dict[str, Any]] = (await server.client.get("/api/v2/tasks", params=params)).json()[
                "items"
            ]
            if enough(items):
                return items
            await asyncio.sleep(0.05)


async def test_submit_with_dependencies_and_an_approval_gate(sqlite_server: LiveServer) -> None:
    url = sqlite_server.base_url
    first = await sqlite_server.create("demo.sleep", params={"seconds": 0.3, "steps": 1}, name="first")
    second = await sqlite_server.create("demo.noop", name="second")
    gated = await cli(
        "submit",
        "demo.noop",
        "--depends-on",
        first["id"],
        "--depends-on",
        second["id"],
        "--requires-approval",
        "--name",
        "gated",
        "--json",
        url=url,
    )
    assert gated.code == 0, gated.err
    task = gated.json()
    assert task["depends_on"] == [first["id"], second["id"]]
    assert task["requires_approval"] is True and task["blocked"] is True
    [gate] = task["pending_questions"]
    assert gate["context"]["kind"] == "approval"
    await sqlite_server.wait_for(first["id"])
    await sqlite_server.wait_for(second["id"])
    assert (await sqlite_server.get(task["id"]))["state"] == "queued"  # still waits for its approval
    answer = f"/api/v2/tasks/{task['id']}/questions/{gate['id']}/answer"
    assert (await sqlite_server.client.post(answer, json={"answer": "approve"})).status_code == 200
    await sqlite_server.wait_for(task["id"], "completed")

    unknown = str(uuid.uuid4())
    refused = await cli("submit", "demo.noop", "--depends-on", unknown, url=url)
    assert refused.code == 1
    assert "422" in refused.err and unknown in refused.err, refused.err


async def test_tree_prints_a_workflow_and_watch_follows_it_until_the_root_ends(
    sqlite_server: LiveServer,
) -> None:
    url = sqlite_server.base_url
    plan = await sqlite_server.create("demo.plan", params={"seconds": 0.3}, name="release")
    items = await history_until(sqlite_server, {"root_id": plan["id"]}, lambda items: len(items) == 4)
    gather = next(t for t in items if t["name"] == "1. gather")

    # Asked for any task of the tree, it prints the whole tree, the root first.
    printed = await cli("tree", gather["id"], url=url)
    assert printed.code == 0, printed.err
    rows = tree_rows(printed.out)
    assert [(r["indent"], r["name"]) for r in rows] == [
        ("", "release"),
        ("├─ ", "1. gather"),
        ("├─ ", "2. build"),
        ("└─ ", "3. ship"),
    ]
    assert rows[0]["note"] == "waiting for 3 of its children"
    assert rows[1]["note"] == "blocked: waits for approval"
    assert rows[2]["note"] == "blocked: waits for 1. gather (queued)"
    as_json = await cli("tree", plan["id"], "--json", url=url)
    assert as_json.json()["root_id"] == plan["id"]
    assert {t["id"] for t in as_json.json()["items"]} == {t["id"] for t in items}

    watch = await start_streaming("tree", plan["id"], "--watch", url=url)
    try:
        for _ in range(4):  # the tree as it is, before anything moves
            await watch.next_line()
        gate = gather["pending_questions"][0]
        answer = f"/api/v2/tasks/{gather['id']}/questions/{gate['id']}/answer"
        assert (await sqlite_server.client.post(answer, json={"answer": "approve"})).status_code == 200
        async with asyncio.timeout(60):
            code = await watch.process.wait()
        rest = (await watch.process.stdout.read()).decode() if watch.process.stdout else ""
    finally:
        if watch.process.returncode is None:
            watch.process.kill()
            await watch.process.wait()
    assert code == 0
    text = "\n".join(watch.lines) + "\n" + rest
    # Each step ran after the one before it; then the root ended, and the final tree was printed.
    ends = [line for line in text.splitlines() if "collecting -> completed" in line]
    assert [line.split()[2] for line in ends] == ["1.", "2.", "3.", "release"], text
    final = tree_rows(text)[-4:]
    assert [(r["name"], r["state"], r["pct"]) for r in final] == [
        ("release", "completed", "100.0"),
        ("1. gather", "completed", "100.0"),
        ("2. build", "completed", "100.0"),
        ("3. ship", "completed", "100.0"),
    ]

    missing = await cli("tree", str(uuid.uuid4()), url=url)
    assert missing.code == 1 and "not_found" in missing.err


async def test_tree_watch_exits_4_when_the_root_is_cancelled(sqlite_server: LiveServer) -> None:
    fanout = await sqlite_server.create("demo.fanout", params={"children": 2, "seconds": 30})
    await sqlite_server.wait_for(fanout["id"], "running")
    watch = await start_streaming("tree", fanout["id"], "--watch", "--json", url=sqlite_server.base_url)
    try:
        snapshot = json.loads(await watch.next_line())
        assert snapshot["type"] == "snapshot"
        assert all(t["root_id"] == fanout["id"] for t in snapshot["tasks"])  # only this tree's tasks
        await sqlite_server.client.post(f"/api/v2/tasks/{fanout['id']}/cancel")
        events = await watch.json_until(
            lambda e: e.get("task_id") == fanout["id"] and e.get("to") == "cancelled"
        )
        cancelled = {e["task_id"] for e in events if e.get("to") == "cancelled"}
        assert len(cancelled) == 3  # the children too, each with its own transition
        async with asyncio.timeout(15):
            assert await watch.process.wait() == 4
    finally:
        if watch.process.returncode is None:
            watch.process.kill()
            await watch.process.wait()


async def test_schedules_create_list_pause_resume_delete(sqlite_server: LiveServer) -> None:
    url = sqlite_server.base_url
    made = await cli(
        "schedules",
        "create",
        "demo.sleep",
        "-p",
        "seconds=0.1",
        "--every",
        "3600",
        "--name",
        "hourly",
        "--overlap",
        "queue",
        "--catch-up",
        "none",
        "--json",
        url=url,
    )
    assert made.code == 0, made.err
    schedule = made.json()
    assert (schedule["name"], schedule["type"], schedule["params"]["seconds"]) == (
        "hourly",
        "demo.sleep",
        0.1,
    )
    assert (schedule["interval_seconds"], schedule["overlap"], schedule["catch_up"]) == (
        3600,
        "queue",
        "none",
    )
    assert schedule["paused"] is False and schedule["next_run_at"]
    nightly = await cli(
        "schedules",
        "create",
        "demo.noop",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Europe/Riga",
        "--paused",
        url=url,
    )
    assert nightly.code == 0, nightly.err
    assert re.match(
        r"^[0-9a-f-]{36}: created  \(demo\.noop, cron 0 3 \* \* \* \(Europe/Riga\), paused\)$", nightly.out
    )

    listed = await cli("schedules", "list", "--json", url=url)
    assert {s["name"] for s in listed.json()["items"]} == {"hourly", "demo.noop"}
    table = await cli("schedules", "list", url=url)
    assert table.out.splitlines()[0].split()[:4] == ["ID", "NAME", "TYPE", "RUNS"]
    assert any(line.startswith(schedule["id"]) and "every 3600s" in line for line in table.out.splitlines())

    paused = await cli("schedules", "pause", schedule["id"], url=url)
    assert paused.code == 0 and paused.out.startswith(f"{schedule['id']}: paused"), paused
    resumed = await cli("schedules", "resume", schedule["id"], "--json", url=url)
    assert resumed.json()["paused"] is False
    deleted = await cli("schedules", "delete", schedule["id"], url=url)
    assert deleted.code == 0 and deleted.out == f"{schedule['id']}: deleted\n", deleted
    gone = await cli("schedules", "pause", schedule["id"], url=url)
    assert gone.code == 1 and "404" in gone.err

    both = await cli("schedules", "create", "demo.noop", "--cron", "* * * * *", "--every", "5", url=url)
    assert both.code == 2 and "not allowed with" in both.err
    bad = await cli("schedules", "create", "demo.noop", "--cron", "every tuesday", url=url)
    assert bad.code == 1 and "422" in bad.err, bad.err


async def test_a_schedule_fires_tasks_the_history_lists_by_trigger_source(sqlite_server: LiveServer) -> None:
    made = await cli("schedules", "create", "demo.noop", "--every", "1", "--json", url=sqlite_server.base_url)
    assert made.code == 0, made.err
    schedule = made.json()
    source = f"schedule:{schedule['id']}"
    fired = await history_until(sqlite_server, {"trigger_source": source}, bool, timeout=20)
    assert fired[0]["trigger"] == "scheduled"
    listed = await cli("schedules", "list", "--json", url=sqlite_server.base_url)
    [mine] = [s for s in listed.json()["items"] if s["id"] == schedule["id"]]
    assert mine["last_task_id"] is not None and mine["last_fired_at"] is not None


# -- serve and migrate: the new user's path ---------------------------------------------------


async def test_serve_on_a_fresh_directory_creates_the_database(tmp_path: Path) -> None:
    """`taskstate serve` with no configuration at all, in an empty directory."""
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "taskstate", "serve", "--port", str(port)],
        cwd=workdir,
        env=cli_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        await wait_ready(process, url, 60, (tmp_path / "serve.log").read_text)
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            ready = await client.get("/readyz")
        assert ready.json()["status"] == "ok"
        assert ready.json()["checks"]["migrations"] == "ok"
        assert (workdir / "taskstate.db").is_file()
        result = await cli("submit", "demo.sleep", "-p", "seconds=0.2", "-p", "steps=2", "--wait", url=url)
        assert result.code == 0, result.err
        assert "collecting -> completed" in result.out
        with sqlite3.connect(workdir / "taskstate.db") as db:
            assert db.execute("select state from tasks").fetchall() == [("completed",)]
        banner = (tmp_path / "serve.log").read_text()
        assert f"on http://127.0.0.1:{port}" in banner and "taskstate.db" in banner
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    # A graceful shutdown; uvicorn then re-raises the signal (128 + 15 to a shell).
    assert process.returncode in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()


async def test_migrate_a_fresh_database(empty_database_url: str) -> None:
    database_url = empty_database_url
    first = await cli("migrate", "--database-url", database_url, url=None)
    assert first.code == 0, first.err
    head = head_revision()
    assert head is not None
    assert first.out.strip().endswith(f"to {head}"), first.out
    assert "password" not in first.out.lower()
    db = open_database(database_url)
    try:
        assert await current_revision(db.reader) == head
    finally:
        await db.dispose()
    again = await cli("migrate", "--database-url", database_url, url=None)
    assert again.code == 0, again.err  # migrating twice is harmless


@pytest.mark.parametrize("compression", ["0", "1"])
async def test_serve_negotiates_websocket_deflate_only_when_asked(tmp_path: Path, compression: str) -> None:
    """`TASKSTATE_WS_COMPRESSION` decides whether a browser's permessage-deflate offer is taken."""
    server = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}", tmp_path, TASKSTATE_WS_COMPRESSION=compression
    )
    await server.start()
    try:
        url = server.url.replace("http://", "ws://", 1) + "/api/v2/events"
        async with websockets.connect(url, compression="deflate") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in extensions) is (compression == "1")
    finally:
        await server.terminate()
