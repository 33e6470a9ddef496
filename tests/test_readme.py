"""README's "Writing a job" works as it is printed there.

The module is taken from the section's Python block and the command from its shell block;
one test runs that command (the `taskstate` console script, in a fresh directory holding
`myjobs.py`) and drives a task over HTTP, another runs every job of the module in process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import httpx

from taskstate.runtime.demo_jobs import register as register_demo_jobs
from taskstate.runtime.registry import JobRegistry
from tests.support.processes import free_port, wait_ready
from tests.support.servers import live_server, make_settings
from tests.support.waits import wait_for_task

README = Path(__file__).resolve().parent.parent / "README.md"
#: The console script of this environment, as `pip install -e .` made it.
TASKSTATE = Path(sys.executable).parent / "taskstate"


def writing_a_job() -> str:
    text = README.read_text()
    match = re.search(r"^## Writing a job\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README has no 'Writing a job' section"
    return match.group(1)


def readme_module() -> str:
    match = re.search(r"```python\n(# myjobs\.py\n.*?)```", writing_a_job(), re.S)
    assert match, "README's 'Writing a job' has no myjobs.py example"
    return match.group(1)


def readme_serve_command() -> list[str]:
    """The section's command that starts the server, as words (its comment dropped)."""
    for block in re.findall(r"```sh\n(.*?)```", writing_a_job(), re.S):
        for line in block.splitlines():
            if "taskstate serve" in line:
                return shlex.split(line, comments=True)
    raise AssertionError("README's 'Writing a job' has no `taskstate serve` command")


def load_readme_module(tmp_path: Path) -> ModuleType:
    path = tmp_path / "myjobs.py"
    path.write_text(readme_module())
    spec = importlib.util.spec_from_file_location("myjobs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["myjobs"] = module
    spec.loader.exec_module(module)
    return module


def clean_env(workdir: Path) -> dict[str, str]:
    """This environment without taskstate's settings or a PYTHONPATH: only the working
    directory can make `myjobs` importable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASKSTATE_", "DATABASE_URL")) and k != "PYTHONPATH"
    }
    return {**env, "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'taskstate.db'}"}


@asynccontextmanager
async def readme_server(workdir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """README's command, run in `workdir` with `.venv/bin/taskstate` being this environment's."""
    words = readme_serve_command()
    assignments = [w for w in words if re.fullmatch(r"[A-Z_]+=.*", w)]
    program, *args = words[len(assignments) :]
    assert assignments == ["TASKSTATE_JOBS=myjobs"] and program.endswith("bin/taskstate"), words
    port = free_port()
    env = {**clean_env(workdir), **dict(a.split("=", 1) for a in assignments), "TASKSTATE_PORT": str(port)}
    log_path = workdir / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(TASKSTATE), *args], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        await wait_ready(process, f"http://127.0.0.1:{port}", 30, log_path.read_text)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def test_the_readme_command_serves_the_readme_jobs(tmp_path: Path) -> None:
    """`TASKSTATE_JOBS=myjobs .venv/bin/taskstate serve` next to myjobs.py: it used to fail with
    ModuleNotFoundError (the console script does not put the working directory on sys.path)."""
    (tmp_path / "myjobs.py").write_text(readme_module())
    async with readme_server(tmp_path) as client:
        types = {t["name"] for t in (await client.get("/api/v2/task-types")).json()["items"]}
        assert {"train", "notebook", "release"} <= types
        train = await client.post("/api/v2/tasks", json={"type": "train", "params": {"epochs": 2}})
        assert train.status_code == 201, train.text
        done = await wait_for_task(client, train.json()["id"], within=20)
        assert (done["state"], done["result"]) == ("completed", {"epochs": 2, "resumed_at": 0})

        # The curl commands that follow in README: a release, its question, the answer.
        release = await client.post("/api/v2/tasks", json={"type": "release", "params": {"version": "1.2"}})
        assert release.status_code == 201, release.text
        inbox: list[dict[str, str]] = []
        async with asyncio.timeout(10):
            while not inbox:
                inbox = (await client.get("/api/v2/questions")).json()["items"]
        task_id, question_id = release.json()["id"], inbox[0]["id"]
        answer = f"/api/v2/tasks/{task_id}/questions/{question_id}/answer"
        assert (await client.post(answer, json={"answer": "yes"})).status_code == 200
        assert (await wait_for_task(client, task_id, within=20))["result"] == {"released": True}


def serve_with_jobs(workdir: Path, module: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(workdir), "TASKSTATE_JOBS": module, "TASKSTATE_PORT": str(free_port())}
    return subprocess.run(
        [str(TASKSTATE), "serve"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_jobs_module_that_cannot_load_is_one_clear_line(tmp_path: Path) -> None:
    """Missing, broken or failing at import: one line on stderr naming the module, the reason
    and the working directory, and a non-zero exit; never a traceback."""
    (tmp_path / "broken.py").write_text("def register(registry):\n    return (\n")
    (tmp_path / "failing.py").write_text("raise RuntimeError('no GPU here')\n")
    (tmp_path / "twice.py").write_text(
        "def register(registry):\n"
        "    async def run(ctx, params):\n        return None\n"
        "    registry.job('demo.noop')(run)\n"
    )
    cases = {
        "nosuchjobs": "ModuleNotFoundError: No module named 'nosuchjobs'",
        "broken": "SyntaxError:",
        "failing": "RuntimeError: no GPU here",
        "twice": "ValueError: a job named 'demo.noop' is already registered",
    }
    for module, reason in cases.items():
        result = serve_with_jobs(tmp_path, module)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0, (module, result)
        assert len(lines) == 1, (module, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout, (module, result.stderr)
        line = lines[0]
        assert f"'{module}'" in line and reason in line and str(tmp_path) in line, (module, line)
        if module == "broken":
            assert "broken.py, line 2" in line, line


async def test_the_readme_jobs_run(database_url: str, tmp_path: Path) -> None:
    module = load_readme_module(tmp_path)
    registry = JobRegistry()
    register_demo_jobs(registry)
    module.register(registry)
    logging.getLogger("myjobs").setLevel(logging.INFO)  # `taskstate serve` logs at INFO
    try:
        async with live_server(make_settings(database_url), registry) as server:
            train = await server.create("train", params={"epochs": 3, "seconds_per_epoch": 0.01})
            notebook = await server.create("notebook")
            release = await server.create("release", params={"version": "1.2"})

            done = await server.wait_for(train["id"])
            assert (done["state"], done["result"], done["progress"]) == (
                "completed",
                {"epochs": 3, "resumed_at": 0},
                100.0,
            )
            lines = (await server.client.get(f"/api/v2/tasks/{train['id']}/logs")).json()["items"]
            assert [x["message"] for x in lines] == ["epoch 1 done", "epoch 2 done", "epoch 3 done"]

            up = await server.wait_for(notebook["id"], "serving")
            assert up["endpoint"].startswith("http://127.0.0.1:")
            await server.client.post(f"/api/v2/tasks/{notebook['id']}/stop")
            stopped = await server.wait_for(notebook["id"])
            assert stopped["state"] == "completed"
            assert up["endpoint"].endswith(str(stopped["result"]["port"]))

            inbox: list[dict[str, str]] = []
            async with asyncio.timeout(10):
                while not inbox:
                    inbox = (await server.client.get("/api/v2/questions")).json()["items"]
            assert inbox[0]["question"] == "Release 1.2?"
            url = f"/api/v2/tasks/{release['id']}/questions/{inbox[0]['id']}/answer"
            assert (await server.client.post(url, json={"answer": "yes"})).status_code == 200
            released = await server.wait_for(release["id"])
            assert released["result"] == {"released": True}
    finally:
        sys.modules.pop("myjobs", None)
