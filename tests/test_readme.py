"""README's "Writing a job" module runs as it is printed there."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
import sys
from pathlib import Path
from types import ModuleType

from taskstate.demo_jobs import register as register_demo_jobs
from taskstate.jobs import JobRegistry
from tests.conftest import live_server, make_settings

README = Path(__file__).resolve().parent.parent / "README.md"


def load_readme_module(tmp_path: Path) -> ModuleType:
    match = re.search(r"```python\n(# myjobs\.py\n.*?)```", README.read_text(), re.S)
    assert match, "README has no myjobs.py example"
    path = tmp_path / "myjobs.py"
    path.write_text(match.group(1))
    spec = importlib.util.spec_from_file_location("myjobs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["myjobs"] = module
    spec.loader.exec_module(module)
    return module


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
