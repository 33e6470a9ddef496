"""README's "Embedding in your FastAPI app" works as printed there: the user's application,
with its own route beside taskstate's under `/jobs`, served by a real uvicorn on both engines.

The module is taken from the section's Python block and imported as it stands; the test runs
the user's jobs through the prefixed API and follows them over the prefixed WebSocket,
checks that the user's route still answers and that nothing of taskstate answers outside the
prefix, then ends the user's lifespan and checks that the supervisor stopped cleanly and
that the next start resumes the job it handed back. Another test runs the section's shell
block: its uvicorn command in a directory holding myapp.py, and the task its curl posts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import websockets

from taskstate.client import AsyncClient
from tests.support.api import create_task, get_transitions
from tests.support.embedded import imported_readme_app, readme_app, readme_commands
from tests.support.processes import free_port, wait_ready
from tests.support.servers import serving
from tests.support.waits import wait_for_task

REPORTS = 6


@pytest.fixture
def myapp(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    with imported_readme_app(tmp_path, database_url, monkeypatch) as module:
        yield module


async def follow(ws: Any, task_ids: set[str], within: float = 30) -> dict[str, list[dict[str, Any]]]:
    """Every event of these tasks from the open socket, until each has reached a terminal state."""
    seen: dict[str, list[dict[str, Any]]] = {t: [] for t in task_ids}
    ended: set[str] = set()
    async with asyncio.timeout(within):
        while ended != task_ids:
            event = json.loads(await ws.recv())
            if event.get("task_id") in task_ids:
                seen[event["task_id"]].append(event)
                if event["type"] == "transition" and event["task"]["is_terminal"]:
                    ended.add(event["task_id"])
    return seen


async def test_the_readme_app_runs_its_jobs_under_its_prefix(myapp: ModuleType) -> None:
    taskstate = myapp.taskstate
    async with serving(myapp.app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        # The user's own route, and only the user's jobs in taskstate.
        assert (await http.get("/hello")).json() == {"hello": "world"}
        types = (await http.get("/jobs/api/v2/task-types")).json()["items"]
        assert [t["name"] for t in types] == ["report"]

        ws_url = base_url.replace("http://", "ws://") + "/jobs/api/v2/events"
        async with websockets.connect(ws_url) as ws:
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "snapshot"
            answers = await asyncio.gather(
                *(
                    http.post("/jobs/api/v2/tasks", json={"type": "report", "params": {"customer": f"c{i}"}})
                    for i in range(REPORTS)
                )
            )
            assert [a.status_code for a in answers] == [201] * REPORTS, [a.text for a in answers]
            ids = {a.json()["id"]: a.json()["params"]["customer"] for a in answers}
            events = await follow(ws, set(ids))

        for task_id, customer in ids.items():
            moves = [(e["from"], e["to"]) for e in events[task_id] if e["type"] == "transition"]
            assert moves[-1] == ("collecting", "completed"), moves
            assert ("preparing", "running") in moves
            progress = [e["progress"] for e in events[task_id] if e["type"] == "progress"]
            assert progress and progress[-1] == 100.0, progress
            task = (await http.get(f"/jobs/api/v2/tasks/{task_id}")).json()
            assert (task["state"], task["result"]) == ("completed", {"customer": customer, "pages": 3})
        # The supervisor ran them side by side: the jobs overlapped in time.
        tasks = [(await http.get(f"/jobs/api/v2/tasks/{t}")).json() for t in ids]
        assert max(t["started_at"] for t in tasks) < min(t["finished_at"] for t in tasks)

        # The Python client, given the prefix, submits and waits (over the prefixed socket).
        async with AsyncClient(f"{base_url}/jobs") as client:
            submitted = await client.submit("report", {"customer": "py", "pages": 2})
            done = await client.wait(submitted["id"], timeout=20)
        assert (done["state"], done["result"]) == ("completed", {"customer": "py", "pages": 2})

        # taskstate's error shape under the prefix ...
        missing = await http.get(f"/jobs/api/v2/tasks/{uuid.uuid4()}")
        assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        # ... and nothing of taskstate outside it: the user's app answers with its own 404s.
        for path in ("/api/v2/tasks", "/api/v2/task-types", "/healthz", "/readyz", "/metrics", "/main.js"):
            leaked = await http.get(path)
            assert (leaked.status_code, leaked.json()) == (404, {"detail": "Not Found"}), path
        refused = await http.post("/api/v2/tasks", json={"type": "report", "params": {"customer": "x"}})
        assert refused.status_code == 404
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(base_url.replace("http://", "ws://") + "/api/v2/events"):
                pass
        # taskstate's browser guard guards its own routes only (README: TASKSTATE_ALLOWED_HOSTS).
        other_host = {"host": "app.example.org"}
        guarded = await http.get("/jobs/api/v2/task-types", headers=other_host)
        assert (guarded.status_code, guarded.json()["error"]) == (400, "host_not_allowed")
        assert (await http.get("/hello", headers=other_host)).json() == {"hello": "world"}
        # The user's OpenAPI document is the user's; taskstate's is under the prefix, saying so.
        own = (await http.get("/openapi.json")).json()
        assert set(own["paths"]) == {"/hello"}
        document = (await http.get("/jobs/openapi.json")).json()
        assert document["servers"][0]["url"] == "/jobs"
        assert "/api/v2/tasks/{task_id}" in document["paths"]
        assert (await http.get("/jobs/healthz")).json()["status"] == "ok"
        assert (await http.get("/jobs/readyz")).json()["checks"]["supervisor"] == "ok"

        # The UI, under the prefix (a browser test drives it: tests/e2e/test_embedded_ui.py).
        page = await http.get("/jobs/", headers={"accept": "text/html"})
        assert page.status_code == 200 and '<script type="module" src="main.js">' in page.text
        assert (await http.get("/jobs")).headers["location"].endswith("/jobs/")
        # The rules that go by path see the path below the prefix: the API docs under it run
        # their inline script (no CSP), the page does not; a batch may be larger than a task.
        assert "content-security-policy" in page.headers
        assert "content-security-policy" not in (await http.get("/jobs/docs")).headers
        big = {"type": "report", "params": {"customer": "x" * 40_000, "pages": 1}}
        batch = await http.post("/jobs/api/v2/tasks/batch", json={"tasks": [big, big]})
        assert batch.status_code == 201, batch.text[:300]
        too_big = await http.post("/jobs/api/v2/tasks", json={**big, "name": "y" * 40_000})
        assert (too_big.status_code, too_big.json()["error"]) == (413, "payload_too_large")

        # A long report, running when the user's application shuts down.
        long = await http.post(
            "/jobs/api/v2/tasks", json={"type": "report", "params": {"customer": "late", "pages": 30}}
        )
        long_id = long.json()["id"]
        await wait_for_task(f"{base_url}/jobs", long_id, "running")
        supervisor = taskstate.services.supervisor

    # The lifespan has ended: the supervisor stopped, no job and none of its loops is left.
    assert not supervisor.alive and not supervisor.started
    assert supervisor.running == {}
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("taskstate-")]
    assert left == []
    with pytest.raises(RuntimeError, match="not running"):
        taskstate.services  # noqa: B018

    # The next start resumes the report it handed back, and finishes it.
    async with serving(myapp.app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        task = await wait_for_task(f"{base_url}/jobs", long_id, "completed", within=30)
        assert task["result"] == {"customer": "late", "pages": 30}
        assert task["restoration_source"] == "server_restart"
        rows = await get_transitions(f"{base_url}/jobs", long_id)
        moves = [(t["from_state"], t["to_state"]) for t in rows]
        assert ("running", "orphaned") in moves and ("orphaned", "queued") in moves, moves


async def test_the_readme_command_serves_the_app(tmp_path: Path) -> None:
    """README's uvicorn command, run in a directory holding myapp.py, and its curl's task."""
    words, body = readme_commands()
    assignments = [w for w in words if re.fullmatch(r"[A-Z_]+=.*", w)]
    program, *args = words[len(assignments) :]
    assert [a.split("=")[0] for a in assignments] == ["DATABASE_URL"] and program.endswith("bin/uvicorn")
    (tmp_path / "myapp.py").write_text(readme_app())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKSTATE_", "DATABASE_URL"))}
    env |= dict(a.split("=", 1) for a in assignments)
    log_path = tmp_path / "uvicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "uvicorn"), *args, "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        await wait_ready(process, f"{base_url}/jobs", 30, log_path.read_text)
        task = await create_task(f"{base_url}/jobs", **body)  # type: ignore[arg-type]
        done = await wait_for_task(f"{base_url}/jobs", task["id"], within=20)
        assert (done["state"], done["result"]) == ("completed", {"customer": "acme", "pages": 3})
        assert (tmp_path / "jobs.db").is_file()  # where README's DATABASE_URL says
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    # uvicorn re-raises the SIGTERM once it has shut down: the lifespan's end is in its log.
    assert "Application shutdown complete." in log_path.read_text(), log_path.read_text()
