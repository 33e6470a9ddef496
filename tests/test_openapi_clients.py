"""Clients generated from the live `/openapi.json` work: Python with `openapi-python-client`
(PyPI), TypeScript types with `openapi-typescript` (npm). The document itself has stable
`operationId`s and names its enums.

The generators run as real subprocesses against a real server; the generated Python client
is imported and drives a task through its life. Nothing here is mocked.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.contract import CONTRACT_STATES
from tests.support.servers import LiveServer, live_server, make_settings

#: The operation ids clients are generated from: renaming one breaks every generated client.
STABLE_OPERATION_IDS = {
    "create_task",
    "create_tasks_batch",
    "list_tasks",
    "list_active_tasks",
    "get_task",
    "list_task_transitions",
    "list_task_logs",
    "cancel_task",
    "stop_task",
    "retry_task",
    "answer_question",
    "list_questions",
    "get_insights",
    "cleanup_tasks",
    "reset",
    "list_workers",
    "list_task_types",
    "get_lifecycle",
    "create_schedule",
    "list_schedules",
    "get_schedule",
    "update_schedule",
    "delete_schedule",
    "pause_schedule",
    "resume_schedule",
    "healthz",
    "readyz",
}
#: Operations of optional features (metrics, API tokens, the UI's config): stable names too, where present.
OPTIONAL_OPERATION_IDS = {"metrics", "create_token", "list_tokens", "revoke_token", "get_config"}

GENERATOR_TIMEOUT = 180.0
NPX_TIMEOUT = 300.0


@pytest.fixture
async def api_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'openapi.db'}")) as live:
        yield live


async def run(*argv: str, cwd: Path, timeout: float) -> tuple[int, str]:
    """A subprocess to its end, bounded; answers its exit code and its output (stdout + stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        raise AssertionError(f"{argv[:4]} still running after {timeout}s:\n{out.decode()}") from None
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


# -- the document ------------------------------------------------------------------------------


async def test_operation_ids_are_stable_and_enums_are_named(api_server: LiveServer) -> None:
    spec = (await api_server.client.get("/openapi.json")).json()
    operations = [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "put", "post", "patch", "delete", "head", "options"}
    ]
    ids = [op.get("operationId") for _, _, op in operations]
    missing = [(m, p) for m, p, op in operations if not op.get("operationId")]
    assert not missing, f"operations without an operationId: {missing}"
    assert len(ids) == len(set(ids)), f"duplicate operationIds: {sorted(ids)}"
    assert STABLE_OPERATION_IDS <= set(ids), f"gone: {sorted(STABLE_OPERATION_IDS - set(ids))}"
    unknown = set(ids) - STABLE_OPERATION_IDS - OPTIONAL_OPERATION_IDS
    assert not unknown, f"operationIds outside the stable set (add them here on purpose): {sorted(unknown)}"

    schemas = spec["components"]["schemas"]
    assert schemas["State"]["type"] == "string"
    assert set(schemas["State"]["enum"]) == set(CONTRACT_STATES)
    assert schemas["Trigger"]["type"] == "string"
    assert set(schemas["Trigger"]["enum"]) == {"manual", "api", "scheduled"}
    # The task's fields refer to the named enums instead of inlining them.
    task = schemas["TaskPublic"]["properties"]
    assert task["state"] == {"$ref": "#/components/schemas/State"}
    assert task["trigger"] == {"$ref": "#/components/schemas/Trigger"}
    # Documented errors use the contract's error body.
    create = spec["paths"]["/api/v2/tasks"]["post"]["responses"]
    for status in ("413", "422"):
        assert create[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    get = spec["paths"]["/api/v2/tasks/{task_id}"]["get"]["responses"]
    assert get["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


# -- Python: openapi-python-client --------------------------------------------------------------


def _generator() -> list[str]:
    try:
        importlib.import_module("openapi_python_client")
    except ImportError:
        pytest.skip("openapi-python-client is not installed (pip install openapi-python-client)")
    return [sys.executable, "-m", "openapi_python_client"]


@pytest.fixture
def generated_package_name() -> Iterator[str]:
    name = f"taskstate_client_{uuid.uuid4().hex[:8]}"
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


async def test_generated_python_client_drives_a_task(
    api_server: LiveServer, tmp_path: Path, generated_package_name: str
) -> None:
    generator = _generator()
    package = tmp_path / generated_package_name
    config = tmp_path / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: the test needs none installed
    code, output = await run(
        *generator,
        "generate",
        "--url",
        f"{api_server.base_url}/openapi.json",
        "--meta",
        "none",
        "--config",
        str(config),
        "--output-path",
        str(package),
        "--fail-on-warning",
        cwd=tmp_path,
        timeout=GENERATOR_TIMEOUT,
    )
    assert code == 0, output
    # No warning: `--fail-on-warning` would have failed it; and nothing but its one line.
    assert "Warning" not in output and output.strip() == f"Generating {package}", output
    for operation in ("create_task", "get_task", "list_task_transitions", "cancel_task", "list_tasks"):
        assert (package / "api" / "tasks" / f"{operation}.py").is_file(), operation

    sys.path.insert(0, str(tmp_path))
    try:
        client_module: Any = importlib.import_module(generated_package_name)
        api: Any = importlib.import_module(f"{generated_package_name}.api.tasks")
        models: Any = importlib.import_module(f"{generated_package_name}.models")
        for name in ("create_task", "get_task", "list_task_transitions", "cancel_task", "list_tasks"):
            importlib.import_module(f"{generated_package_name}.api.tasks.{name}")
    finally:
        sys.path.remove(str(tmp_path))
    State, Trigger = models.State, models.Trigger

    # The server runs in this event loop: use the generated client's asyncio functions.
    client = client_module.Client(base_url=api_server.base_url, raise_on_unexpected_status=True, timeout=30)
    async with client as c:
        body = models.TaskCreate(
            type_="demo.sleep",
            params=models.TaskCreateParamsType0.from_dict({"seconds": 0.3, "steps": 3}),
            name="generated",
            trigger=Trigger.MANUAL,
        )
        created = await api.create_task.asyncio_detailed(client=c, body=body)
        assert created.status_code == 201
        task = created.parsed
        assert isinstance(task, models.TaskPublic)
        assert task.state is State.QUEUED
        assert task.trigger is Trigger.MANUAL
        assert task.params.to_dict() == {"seconds": 0.3, "steps": 3}

        # wait: poll get_task until the task has ended
        async with asyncio.timeout(30):
            while True:
                current = await api.get_task.asyncio(task.id, client=c)
                assert isinstance(current, models.TaskDetail)
                if current.is_terminal:
                    break
                await asyncio.sleep(0.05)
        assert current.state is State.COMPLETED
        assert current.to_dict()["result"] == {"slept": 0.3, "steps": 3}
        assert current.finished_at is not None and current.finished_at >= current.created_at
        assert current.duration_seconds > 0

        history = await api.list_task_transitions.asyncio(task.id, client=c)
        assert isinstance(history, models.TransitionList)
        assert [(t.from_state, t.to_state) for t in history.items] == [
            (None, State.QUEUED),
            (State.QUEUED, State.PREPARING),
            (State.PREPARING, State.RUNNING),
            (State.RUNNING, State.COLLECTING),
            (State.COLLECTING, State.COMPLETED),
        ]
        assert [t.seq for t in history.items] == sorted(t.seq for t in history.items)

        # cancel: a finished task is refused with the contract's typed error body ...
        refused = await api.cancel_task.asyncio_detailed(task.id, client=c)
        assert refused.status_code == 409
        assert isinstance(refused.parsed, models.ErrorBody)
        assert refused.parsed.error == "invalid_transition"
        assert refused.parsed.additional_properties["from"] == "completed"

        # ... a running one is cancelled.
        service = await api.create_task.asyncio(client=c, body=models.TaskCreate(type_="demo.serve"))
        assert isinstance(service, models.TaskPublic)
        async with asyncio.timeout(30):
            while True:
                if (await api.get_task.asyncio(service.id, client=c)).state is State.SERVING:
                    break
                await asyncio.sleep(0.05)
        cancelled = await api.cancel_task.asyncio(service.id, client=c)
        assert isinstance(cancelled, models.TaskPublic)
        assert cancelled.state is State.CANCELLED and cancelled.is_terminal

        listed = await api.list_tasks.asyncio(client=c, state=[State.CANCELLED])
        assert isinstance(listed, models.TaskPage)
        assert [t.id for t in listed.items] == [service.id]

        missing = await api.get_task.asyncio_detailed(str(uuid.uuid4()), client=c)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.ErrorBody) and missing.parsed.error == "not_found"

        unknown = await api.create_task.asyncio_detailed(client=c, body=models.TaskCreate(type_="no.such"))
        assert unknown.status_code == 422
        assert isinstance(unknown.parsed, models.ErrorBody)
        assert unknown.parsed.error == "unknown_task_type"


# -- TypeScript: openapi-typescript ------------------------------------------------------------


async def test_openapi_typescript_generates_types(api_server: LiveServer, tmp_path: Path) -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not installed: cannot run openapi-typescript")
    spec = tmp_path / "openapi.json"
    spec.write_bytes((await api_server.client.get("/openapi.json")).content)
    out = tmp_path / "taskstate.d.ts"
    code, output = await run(
        npx,
        "--yes",
        "openapi-typescript@7",
        str(spec),
        "--output",
        str(out),
        cwd=tmp_path,
        timeout=NPX_TIMEOUT,
    )
    assert code == 0, output
    # No warning, no error: its only lines are its banner and the file it wrote.
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("npm ")]
    assert [line.split(" ", 1)[0] for line in lines] == ["\N{SPARKLES}", "\N{ROCKET}"], output
    text = out.read_text()
    # A job's result is typed as the JSON value it is, not left `unknown`.
    result = re.search(r"\n\s+result: (\{.*?\} \| .*?);\n", text, re.S)
    assert result is not None, "no `result` in the generated types"
    assert re.sub(r"\s+", " ", result.group(1)) == (
        "{ [key: string]: unknown; } | unknown[] | string | number | boolean | null"
    )
    assert '"/api/v2/tasks/{task_id}/cancel": {' in text
    assert "    create_task: {" in text and "    get_task: {" in text
    assert 'State: "queued" | "preparing" | "running"' in text
    assert 'Trigger: "manual" | "api" | "scheduled";' in text

    # The generated types compile on their own under the strictest settings.
    code, output = await run(
        npx,
        "--yes",
        "-p",
        "typescript@5",
        "tsc",
        "--noEmit",
        "--strict",
        str(out),
        cwd=tmp_path,
        timeout=NPX_TIMEOUT,
    )
    assert code == 0, output
