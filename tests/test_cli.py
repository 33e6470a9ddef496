"""The `taskstate` command line for people, run as a real subprocess against a real server.

`python -m taskstate submit|status|watch|cancel|tasks|workers` talks to an in-process uvicorn
(`live_server`) or to `taskstate serve` in a subprocess (`ServerProcess`); the server is never
faked. The CLI runs through `asyncio.create_subprocess_exec`, so that the in-process server
keeps serving while a command waits on it. Every wait is bounded.
"""

from __future__ import annotations

import argparse
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

from taskstate.cli import build_parser
from taskstate.core.db import open_database
from taskstate.core.migrations import current_revision, head_revision
from taskstate.web import auth
from tests import jobs as test_jobs
from tests.support.processes import REPO, ServerProcess, free_port, stop_gracefully, wait_ready
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
        # As the shared `server` fixture checks: nothing may be left running.
        await live.assert_nothing_left_running()


def transition_pairs(text: str, task_id: str) -> list[tuple[str | None, str]]:
    pairs: list[tuple[str | None, str]] = []
    for line in text.splitlines():
        match = TRANSITION_LINE.match(line)
        if match and match["id"] == task_id[:8]:
            pairs.append((None if match["from"] == "-" else match["from"], match["to"]))
    return pairs


# -- submit, status, tasks, cancel, workers, on both backends ----------------------------------


async def test_submit_status_tasks_cancel_workers(sqlite_server: LiveServer) -> None:
    server = sqlite_server
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
        # A short id is looked up among the tasks the token may see: another's is not found.
        short = await cli("status", task_id[:8], "--json", "--token", operator, url=url)
        assert short.code == 0 and short.json()["id"] == task_id, short.err
        hidden = await cli("status", task_id[:8], "--token", viewer, url=url)
        assert hidden.code == 1 and "no task has an id starting with" in hidden.err, hidden
        mine = await cli("tasks", "--json", url=url, TASKSTATE_TOKEN=operator)
        assert [t["id"] for t in mine.json()["items"]] == [task_id]


# -- watch ------------------------------------------------------------------------------------


async def test_watch_id_prints_transitions_and_progress_and_ends(sqlite_server: LiveServer) -> None:
    server = sqlite_server
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
    """On a terminal the bar is one line redrawn in place (up a line, clear below), with the
    transitions scrolling above it; it is gone from the screen once the task has ended."""
    term = await OnATerminal.start(
        "submit", "demo.sleep", "-p", "seconds=2", "-p", "steps=4", "--wait", "--url", sqlite_server.base_url
    )
    assert await term.end() == 0, term.lines()
    text = term.raw.decode()
    assert text.count("\r\x1b[1A\x1b[J") >= 4, text  # the bar, erased to be drawn again
    assert re.search(r"[0-9a-f]{8} demo\.sleep  running\s+\[#{15}\.{15}\]  50\.0%", text), text
    screen = term.lines()
    assert not term.bars(), screen
    assert [m["to"] for line in screen if (m := TRANSITION_LINE.match(line))][-1] == "completed"
    assert "completed after" in screen[-1]


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
        stop_gracefully(process)
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


# -- on a terminal: what a person sees ---------------------------------------------------------

TERMINAL_ROWS, TERMINAL_COLUMNS = 40, 150
BAR_LINE = re.compile(
    r"^(?P<id>[0-9a-f]{8}) (?P<name>.+?)  (?P<state>[a-z]+)\s+\[[#.]{30}\]\s+(?P<pct>\d+\.\d)%"
)


class OnATerminal:
    """A CLI command whose stdout (and stdin, if asked) is a pseudo-terminal of 40 x 150, its
    screen rendered by a terminal emulator (pyte) as a person would see it."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        import pyte

        self.process = process
        self.master = master
        self.raw = bytearray()
        self.screen = pyte.Screen(TERMINAL_COLUMNS, TERMINAL_ROWS)
        self._stream = pyte.ByteStream(self.screen)
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    @classmethod
    async def start(cls, *args: str) -> OnATerminal:
        import fcntl
        import struct
        import termios

        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", TERMINAL_ROWS, TERMINAL_COLUMNS, 0, 0))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "taskstate",
            *args,
            stdout=slave,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env=cli_env(COLUMNS=str(TERMINAL_COLUMNS), LINES=str(TERMINAL_ROWS)),
        )
        os.close(slave)
        return cls(process, master)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the command has ended and closed its side
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self.master)
            self._closed.set()
        self.raw += chunk
        self._stream.feed(chunk)
        self._changed.set()

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display if line.strip()]

    def bars(self) -> list[dict[str, str]]:
        return [m.groupdict() for line in self.lines() if (m := BAR_LINE.match(line))]

    async def until(self, predicate: Any, within: float = 30) -> list[str]:
        """The screen's lines once `predicate(self)` holds."""
        try:
            async with asyncio.timeout(within):
                while not predicate(self):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError("the screen never got there:\n" + "\n".join(self.lines())) from None
        return self.lines()

    async def end(self, sig: int | None = None, within: float = 30) -> int:
        """Waits for the command to end (after `sig`, if given); answers its exit code."""
        if sig is not None and self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            async with asyncio.timeout(within):
                code = await self.process.wait()
                await self._closed.wait()  # all it wrote has been read
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)
        return code


async def test_watch_on_a_terminal_keeps_a_bar_per_active_task(sqlite_server: LiveServer) -> None:
    """Three tasks at three points of their progress: `watch` keeps one bar for each at the
    bottom of the screen (not one bar for whichever moved last), and drops a task's bar
    when it ends."""
    url = sqlite_server.base_url

    async def reporting(name: str, progress: float) -> dict[str, Any]:
        task = await sqlite_server.create(
            "test.report", params={"gate": name, "lines": 1, "progress": progress}, name=name
        )
        await sqlite_server.wait_for(task["id"], until=lambda t: t["progress"] == progress)
        return task

    alpha = await reporting("alpha", 25)  # before the watch: it comes in the snapshot
    term = await OnATerminal.start("watch", "--url", url)
    try:
        await term.until(lambda t: [b["name"] for b in t.bars()] == ["alpha"])
        beta = await reporting("beta", 50)
        gamma = await reporting("gamma", 75)
        expected = {"alpha": (alpha, "25.0"), "beta": (beta, "50.0"), "gamma": (gamma, "75.0")}

        def all_three(t: OnATerminal) -> bool:
            return {b["name"]: b["pct"] for b in t.bars()} == {n: p for n, (_, p) in expected.items()}

        screen = await term.until(all_three)
        bars = term.bars()
        assert len(bars) == 3, screen  # one line per task, no more
        assert {b["id"]: b["name"] for b in bars} == {t["id"][:8]: n for n, (t, _) in expected.items()}
        assert all(b["state"] == "running" for b in bars)
        assert [BAR_LINE.match(line) is not None for line in screen[-3:]] == [True] * 3, screen

        test_jobs.GATES["beta"].set()
        await sqlite_server.wait_for(beta["id"])
        screen = await term.until(
            lambda t: (
                [b["name"] for b in t.bars()] == ["alpha", "gamma"]
                and any("beta  completed after" in line for line in t.lines())
            )
        )
        assert [BAR_LINE.match(line) is not None for line in screen[-2:]] == [True, True], screen
        assert await term.end(signal.SIGINT) == 130
        assert not term.bars(), term.lines()  # taken off the screen on the way out
    finally:
        for gate in ("alpha", "beta", "gamma"):
            test_jobs.GATES[gate].set()
        if term.process.returncode is None:
            await term.end(signal.SIGKILL)


async def test_watch_elsewhere_prints_each_tasks_progress_as_lines(sqlite_server: LiveServer) -> None:
    """Not on a terminal: no redrawing, and each task's progress is a plain line naming it."""
    watch = await start_streaming("watch", url=sqlite_server.base_url)
    try:
        assert "no active tasks" in await watch.next_line()
        tasks = {}
        for name, progress in (("one", 20.0), ("two", 40.0), ("three", 60.0)):
            tasks[name] = await sqlite_server.create(
                "test.report", params={"gate": name, "lines": 0, "progress": progress}, name=name
            )
        short_ids = {t["id"][:8]: name for name, t in tasks.items()}
        seen: dict[str, str] = {}
        async with asyncio.timeout(30):
            while len(seen) < 3:
                line = await watch.next_line()
                if m := PROGRESS_LINE.search(line):
                    short_id, name = line.split()[:2]
                    assert short_ids[short_id] == name, line
                    seen[name] = m["pct"]
        assert seen == {"one": "20.0", "two": "40.0", "three": "60.0"}
        assert not any("\x1b" in line or "\r" in line for line in watch.lines)
        assert await watch.stop(signal.SIGINT) == 130
    finally:
        for name in ("one", "two", "three"):
            test_jobs.GATES[name].set()
        if watch.process.returncode is None:
            watch.process.kill()
            await watch.process.wait()


# -- short ids --------------------------------------------------------------------------------


async def test_short_ids_and_the_id_prefix_filter(server: LiveServer) -> None:
    """`GET /api/v2/tasks?id_prefix=` finds exactly the tasks whose id starts with the prefix
    (any case, with or without the hyphens, across the carry of an `f`); the CLI takes the
    8-character ids it prints, and names the candidates of an ambiguous prefix (exit 2)."""
    url = server.base_url
    batch = [{"type": "demo.noop", "name": f"n{i:02d}", "run_at": FAR_FUTURE} for i in range(40)]
    response = await server.client.post("/api/v2/tasks/batch", json={"tasks": batch})
    assert response.status_code == 201, response.text
    ids = [t["id"] for t in response.json()["items"]]

    prefixes = {format(d, "x") for d in range(16)}
    prefixes |= {i[:n] for i in ids for n in (2, 3, 8, 9, 14, 36)}  # 9 and 14 end in a hyphen
    prefixes |= {i[:5] + "f" for i in ids}  # the carry (`…f` -> next digit), whether or not it matches
    for prefix in sorted(prefixes):
        for asked in (prefix, prefix.upper()):
            page = (
                await server.client.get("/api/v2/tasks", params={"id_prefix": asked, "limit": 500})
            ).json()
            expected = sorted(i for i in ids if i.startswith(prefix))
            assert sorted(t["id"] for t in page["items"]) == expected, asked
            assert page["total"] == len(expected), asked
    for bad in ("xyz", "-1", "1a2b!", "a" * 37, ""):
        refused = await server.client.get("/api/v2/tasks", params={"id_prefix": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"] == "validation_error"

    first, second = ids[0], ids[1]
    shown = await cli("status", first[:8], "--json", url=url)
    assert shown.code == 0, shown.err
    assert shown.json()["id"] == first
    upper = await cli("status", first[:8].upper(), "--json", url=url)
    assert upper.code == 0 and upper.json()["id"] == first, upper.err

    digit = next(d for d in sorted(prefixes) if len(d) == 1 and sum(i.startswith(d) for i in ids) >= 2)
    ambiguous = await cli("status", digit, url=url)
    assert ambiguous.code == 2, ambiguous
    assert ambiguous.out == ""
    assert f"the short id {digit!r} is ambiguous" in ambiguous.err
    candidates = [i for i in ids if i.startswith(digit)]
    shown_ids = re.findall(r"^  ([0-9a-f-]{36})  ", ambiguous.err, re.M)
    assert set(shown_ids) <= set(candidates) and len(shown_ids) == min(10, len(candidates))

    unused = next(
        p
        for p in (f"{a:x}{b:x}" for a in range(16) for b in range(16))
        if not any(i.startswith(p) for i in ids)
    )
    unknown = await cli("cancel", unused, url=url)
    assert unknown.code == 1
    assert f"no task has an id starting with {unused!r}" in unknown.err
    not_hex = await cli("status", "latest", url=url)
    assert not_hex.code == 1 and "a task id is a UUID, or the start of one" in not_hex.err

    # Every command that takes an id takes the short one.
    dependent = await cli("submit", "demo.noop", "--depends-on", second[:8], "--json", url=url)
    assert dependent.code == 0, dependent.err
    assert dependent.json()["depends_on"] == [second]
    cancelled = await cli("cancel", first[:8], url=url)
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out.strip() == f"{first}: cancelled"
    watched = await cli("watch", first[:8], url=url)
    assert watched.code == 4  # it ended cancelled
    assert transition_pairs(watched.out, first)[-1] == ("queued", "cancelled")
    tree = await cli("tree", second[:8], "--json", url=url)
    assert tree.code == 0 and tree.json()["root_id"] == second, tree.err
    logs = await cli("logs", second[:8], url=url)
    assert logs.code == 0 and logs.out == "", logs
    for ref in (second, *(i for i in ids[2:])):
        await server.client.post(f"/api/v2/tasks/{ref}/cancel")


# -- connection options, the URL, completion --------------------------------------------------


async def test_connection_options_before_or_after_the_command(sqlite_server: LiveServer) -> None:
    """`--url` and the other connection options go before the command or after it (after
    wins), in the environment or not at all; a URL without a scheme is http://."""
    host = sqlite_server.base_url.removeprefix("http://")  # 127.0.0.1:PORT
    task = await sqlite_server.create("demo.noop", name="optioned")
    await sqlite_server.wait_for(task["id"])
    short = task["id"][:8]

    before = await cli("--url", host, "--json", "status", short, url=None)
    assert before.code == 0, before.err
    assert before.json()["name"] == "optioned"
    after = await cli("status", short, "--json", "--url", host, url=None)
    assert after.code == 0 and after.json()["id"] == task["id"], after.err
    dead = f"127.0.0.1:{free_port()}"
    overridden = await cli("--url", dead, "--timeout", "5", "status", short, "--url", host, url=None)
    assert overridden.code == 0, overridden.err
    unreachable = await cli("--url", dead, "tasks", url=None)
    assert unreachable.code == 3 and f"http://{dead}" in unreachable.err, unreachable
    from_env = await cli("tasks", "--json", url=None, TASKSTATE_URL=host)
    assert from_env.code == 0 and from_env.json()["items"][0]["id"] == task["id"], from_env.err
    for argv in (
        ["--url", host, "schedules", "list", "--json"],
        ["schedules", "--url", host, "list", "--json"],
        ["schedules", "list", "--url", host, "--json"],
    ):
        listed = await cli(*argv, url=None)
        assert listed.code == 0 and listed.json() == {"items": []}, (argv, listed)
    with_token = await cli("--token", "t0", "--url", host, "watch", short, "--json", url=None)
    assert with_token.code == 0, with_token.err

    for bad, why in (("ftp://example.org", "http:// or https://"), ("http://", "no host")):
        refused = await cli("--url", bad, "tasks", url=None)
        assert refused.code == 2, refused
        assert why in refused.err


def command_names() -> set[str]:
    """The commands of `taskstate`, as its parser has them."""
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(commands.choices)


def test_completion_scripts_know_every_command() -> None:
    """`taskstate completion SHELL` prints a script (shtab) that names every command, and in
    bash it completes them, their options and the choices of their arguments."""
    names = command_names()
    assert {"logs", "answer", "retry", "stop", "reset", "completion", "status", "watch"} <= names
    for shell in ("bash", "zsh", "tcsh"):
        done = subprocess.run(
            [sys.executable, "-m", "taskstate", "completion", shell],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        missing = {name for name in names if name not in done.stdout}
        assert not missing, (shell, missing)

    script = f"""
    source <({sys.executable} -m taskstate completion bash)
    for words in "taskstate an" "taskstate logs 1a2b --fo" "taskstate --u" "taskstate completion z" \\
                 "taskstate schedules pa" "taskstate tasks --state fai"; do
      read -ra COMP_WORDS <<< "$words"
      COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE="$words"; COMP_POINT=${{#words}}
      COMPREPLY=()
      _shtab_taskstate taskstate "${{COMP_WORDS[-1]}}" "${{COMP_WORDS[-2]}}"
      echo "${{COMPREPLY[*]}}"
    done
    """
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=cli_env(), timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["answer", "--follow", "--url", "zsh", "pause", "failed"], done


# -- logs, answer, retry, stop, reset ---------------------------------------------------------


def log_messages(text: str) -> list[str]:
    """The messages of `taskstate logs` lines (`HH:MM:SS  level    message`)."""
    return [line.split(None, 2)[2] for line in text.splitlines()]


async def test_logs_follow_one_task_while_others_log_too(sqlite_server: LiveServer) -> None:
    """Three tasks log at once; `logs --follow` of one, started as it begins and another
    started half-way, each print exactly its lines, in order, none lost or twice, live (the
    first line well before the task ends), and end when it does, with its outcome."""
    server = sqlite_server
    url = server.base_url
    lines = 80
    params = {"lines": lines, "delay": 0.05}
    tasks = [await server.create("test.chatter", params=params, name=f"chatter {i}") for i in range(3)]
    followed = tasks[1]
    early = await start_streaming("logs", followed["id"][:8], "--follow", url=url)
    late: Streaming | None = None
    try:
        first = await early.next_line(within=30)
        assert not (await server.get(followed["id"]))["is_terminal"], "the first line came only at the end"
        await server.wait_for(followed["id"], until=lambda t: t["progress"] >= 50)
        late = await start_streaming("logs", followed["id"][:8], "--follow", "--json", url=url)
        async with asyncio.timeout(60):
            early_out, early_err = await early.process.communicate()
            late_out, late_err = await late.process.communicate()
        assert early.process.returncode == 0, early_err
        assert late.process.returncode == 0, late_err
    finally:
        for streaming in (early, late):
            if streaming is not None and streaming.process.returncode is None:
                streaming.process.kill()
                await streaming.process.wait()
    expected = [f"{followed['id']} line {i}" for i in range(1, lines + 1)]
    assert log_messages(first + "\n" + early_out.decode()) == expected
    late_lines = [json.loads(line) for line in late_out.decode().splitlines()]
    assert [x["message"] for x in late_lines] == expected
    assert [x["seq"] for x in late_lines] == list(range(1, lines + 1))

    stored = (await server.client.get(f"/api/v2/tasks/{followed['id']}/logs")).json()["items"]
    again = await cli("logs", followed["id"], "--json", url=url)
    assert again.code == 0, again.err
    assert [json.loads(line) for line in again.out.splitlines()] == stored
    after = await cli("logs", followed["id"][:8], "--after", "75", url=url)
    assert log_messages(after.out) == expected[75:]
    # Following a task that has ended prints its lines and returns at once.
    ended = await cli("logs", tasks[0]["id"][:8], "--follow", url=url, timeout=30)
    assert ended.code == 0, ended.err
    assert log_messages(ended.out) == [f"{tasks[0]['id']} line {i}" for i in range(1, lines + 1)]
    for task in tasks:
        await server.wait_for(task["id"])

    failing = await server.create("test.chatter", params={"lines": 5, "delay": 0.05, "fail": True})
    failed = await cli("logs", failing["id"][:8], "--follow", url=url)
    assert failed.code == 4, failed  # the task it followed ended failed
    assert log_messages(failed.out) == [f"{failing['id']} line {i}" for i in range(1, 6)]


async def test_answer_one_of_several_waiting_tasks(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    url = server.base_url
    asks = [
        await server.create("demo.ask", params={"question": f"go on, {i}?"}, name=f"ask {i}")
        for i in range(3)
    ]
    for ask in asks:
        await server.wait_for(ask["id"], until=lambda t: bool(t["pending_questions"]))

    answered = await cli("answer", asks[1]["id"][:8], "no", url=url)
    assert answered.code == 0, answered.err
    assert "go on, 1?" in answered.out and 'with "no"' in answered.out
    done = await server.wait_for(asks[1]["id"])
    assert done["state"] == "completed" and done["result"] == {"answer": "no"}
    for other in (asks[0], asks[2]):  # the others still wait for theirs
        task = await server.get(other["id"])
        assert task["state"] == "running" and len(task["pending_questions"]) == 1

    not_a_choice = await cli("answer", asks[0]["id"][:8], "maybe", url=url)
    assert not_a_choice.code == 1
    assert "422" in not_a_choice.err and "must be one of" in not_a_choice.err
    assert len((await server.get(asks[0]["id"]))["pending_questions"]) == 1

    # Two questions at once: which one is answered must be said.
    two = await server.create("test.ask_two")
    task = await server.wait_for(two["id"], until=lambda t: len(t["pending_questions"] or []) == 2)
    questions = {q["question"]: q for q in task["pending_questions"]}
    which = await cli("answer", two["id"][:8], "yes", url=url)
    assert which.code == 2, which
    assert "--question" in which.err and all(q["id"] in which.err for q in questions.values())
    first = await cli("answer", two["id"][:8], "yes", "--question", questions["first?"]["id"][:6], url=url)
    assert first.code == 0, first.err
    # "2" is one of the choices: it is sent as the string it is, not as the number 2.
    second = await cli("answer", two["id"][:8], "2", "--question", questions["second?"]["id"], url=url)
    assert second.code == 0, second.err
    assert (await server.wait_for(two["id"]))["result"] == ["yes", "2"]

    gated = await server.create("demo.noop", requires_approval=True)
    approved = await cli("answer", gated["id"][:8], "approve", "--json", url=url)
    assert approved.code == 0, approved.err
    assert approved.json()["id"] == gated["id"]
    assert (await server.wait_for(gated["id"]))["state"] == "completed"

    nothing = await cli("answer", gated["id"][:8], "approve", url=url)
    assert nothing.code == 1
    assert "has no pending question" in nothing.err
    for ask in (asks[0], asks[2]):
        assert (await cli("answer", ask["id"], "yes", url=url)).code == 0
        assert (await server.wait_for(ask["id"]))["result"] == {"answer": "yes"}


async def test_retry_and_stop(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    url = server.base_url
    broken = await server.create("demo.fail", params={"message": "broken"})
    await server.wait_for(broken["id"])
    retried = await cli("retry", broken["id"][:8], "--json", url=url)
    assert retried.code == 0, retried.err
    again = retried.json()
    assert again["retry_of"] == broken["id"] and again["id"] != broken["id"]
    assert (await server.wait_for(again["id"]))["state"] == "failed"
    waited = await cli("retry", again["id"][:8], "--wait", url=url)
    assert waited.code == 4, waited  # it failed again
    third = waited.out.split()[3]
    assert waited.out.startswith(f"retried {again['id']} as {third}")
    assert (await server.get(third))["retry_of"] == again["id"]
    assert "failed after" in waited.out and "broken" in waited.out

    service = await server.create("demo.serve")
    await server.wait_for(service["id"], "serving")
    stopped = await cli("stop", service["id"][:8], url=url)
    assert stopped.code == 0, stopped.err
    assert stopped.out.strip() == f"{service['id']}: stopping"
    assert (await server.wait_for(service["id"]))["state"] == "completed"
    twice = await cli("stop", service["id"][:8], url=url)
    assert twice.code == 1 and "invalid_transition" in twice.err
    not_failed = await cli("retry", service["id"][:8], url=url)
    assert not_failed.code == 1 and "only a failed or cancelled task can be retried" in not_failed.err


async def cli_on_a_terminal_stdin(*args: str, url: str, typed: str) -> Result:
    """Run the CLI with its stdin a terminal, on which `typed` is typed."""
    master, slave = os.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskstate",
        *args,
        "--url",
        url,
        stdin=slave,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    os.close(slave)
    try:
        os.write(master, typed.encode())
        async with asyncio.timeout(CLI_TIMEOUT):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def test_reset_asks_first_unless_yes(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    url = server.base_url
    running = [await server.create("demo.sleep", params={"seconds": 600, "steps": 600}) for _ in range(3)]
    waiting = [await server.create("demo.noop", run_at=FAR_FUTURE) for _ in range(2)]
    for task in running:
        await server.wait_for(task["id"], "running")
    everyone = [t["id"] for t in running + waiting]

    async def states() -> set[str]:
        return {(await server.get(i))["state"] for i in everyone}

    no_terminal = await cli("reset", url=url)  # stdin is not a terminal: it cannot ask
    assert no_terminal.code == 2, no_terminal
    assert "--yes" in no_terminal.err
    declined = await cli_on_a_terminal_stdin("reset", url=url, typed="no\n")
    assert declined.code == 1, declined
    assert "This cancels all 5 tasks that have not ended" in declined.err
    assert "nothing was reset" in declined.err
    assert await states() == {"running", "queued"}

    confirmed = await cli_on_a_terminal_stdin("reset", url=url, typed="reset\n")
    assert confirmed.code == 0, confirmed
    assert confirmed.out.strip() == "reset: 5 tasks ended"
    assert await states() == {"cancelled"}
    nothing_left = await cli("reset", "--yes", "--json", url=url)
    assert nothing_left.code == 0, nothing_left.err
    assert nothing_left.json() == {"reset": 0}


def test_readme_shows_the_command_line_as_it_is() -> None:
    """Every command of README's "The command line" parses as printed, and every command of
    `taskstate` that drives a server is shown there."""
    import shlex

    readme = (REPO / "README.md").read_text()
    section = re.search(r"^## The command line\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section, "README has no 'The command line' section"
    [block] = re.findall(r"```sh\n(.*?)```", section.group(1), re.S)
    shown: set[str] = set()
    for line in block.splitlines():
        words = shlex.split(line.split(" > ")[0], comments=True)
        assert words[0] == ".venv/bin/taskstate", line
        try:
            args = build_parser().parse_args(words[1:])
        except SystemExit:
            raise AssertionError(f"README's command does not parse: {line}") from None
        shown.add(args.command)
    not_shown = command_names() - shown
    assert not_shown == {"serve", "migrate", "token"}, not_shown  # those have sections of their own


async def test_watch_on_a_terminal_with_more_tasks_than_rows(sqlite_server: LiveServer) -> None:
    """60 active tasks on a 40-row terminal: as many bars as fit, then how many more; the
    snapshot is drawn once, not once per task."""
    batch = [{"type": "demo.noop", "name": f"w{i:02d}", "run_at": FAR_FUTURE} for i in range(60)]
    response = await sqlite_server.client.post("/api/v2/tasks/batch", json={"tasks": batch})
    assert response.status_code == 201, response.text[:300]
    term = await OnATerminal.start("watch", "--url", sqlite_server.base_url)
    try:
        screen = await term.until(lambda t: any("more active tasks" in line for line in t.lines()))
        room = TERMINAL_ROWS - 2
        assert len(term.bars()) == room - 1, screen
        assert screen[-1] == f"… and {60 - room + 1} more active tasks"
        assert all(b["state"] == "queued" for b in term.bars())
        assert term.raw.count(b"\x1b[J") <= 1, "the snapshot was drawn more than once"
    finally:
        assert await term.end(signal.SIGINT) == 130


async def test_logs_follow_across_a_server_restart(tmp_path: Path) -> None:
    """The server is killed under `logs --follow` and started again (its task orphaned and
    run again): the follower reconnects, and what it printed is exactly the stored log."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}", tmp_path)
    await server.start()
    follow: Streaming | None = None
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            body = {"type": "test.chatter", "params": {"lines": 50, "delay": 0.1}}
            task_id = (await client.post("/api/v2/tasks", json=body)).json()["id"]
        follow = await start_streaming(
            "logs", task_id[:8], "--follow", "--json", "--reconnect-for", "60", url=server.url
        )
        first = await follow.next_line(within=30)
        await server.kill()
        await server.start()  # the same port and database
        async with asyncio.timeout(120):
            out, err = await follow.process.communicate()
        assert follow.process.returncode == 0, err.decode()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            task = (await client.get(f"/api/v2/tasks/{task_id}")).json()
            stored = (await client.get(f"/api/v2/tasks/{task_id}/logs", params={"limit": 5000})).json()
        assert task["state"] == "completed" and task["attempt"] >= 2, task
        printed = [json.loads(first), *(json.loads(line) for line in out.decode().splitlines())]
        assert printed == stored["items"]
        assert printed[-1]["message"] == f"{task_id} line 50"
        # Both runs' lines: the first run's stored ones (the line printed before the kill
        # among them), then the second run's, from its line 1.
        assert [p["message"] for p in printed].count(f"{task_id} line 1") == 2
    finally:
        if follow is not None and follow.process.returncode is None:
            follow.process.kill()
            await follow.process.wait()
        server.stop_quietly()
