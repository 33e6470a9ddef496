"""The TaskStateManager for other front ends: packaged, typed, served, and the seed's examples.

- `frontend/package.json` packs as `taskstate-client` (npm pack, as a user would install it);
  a fresh project installs the tarball and imports `{ TaskStateManager } from 'taskstate-client'`.
- Its hand-written `.d.ts` is checked by `tsc --strict` (typescript from npm, through npx): a
  typed consumer compiles, under node's and a bundler's module resolution; each misuse line
  fails, and nothing else does. Every public member of the JavaScript class is declared, and
  each declared answer (Task, Schedule, …) has exactly its schema's fields in /openapi.json.
- Seed 000's usage examples (`tests/js/seed_examples.test.mjs`) run under `node --test` against
  a live server on SQLite, several tasks at once, through the installed package; so does
  README's example, as printed.
- The served stable path `/task-state-manager.js` answers the module and everything it imports,
  as JavaScript, byte for byte what the package holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from taskstate.jobs import JobContext, JobRegistry
from tests.support.servers import LiveServer, live_server, make_registry, make_settings

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "frontend"
ASSETS = Path(__file__).resolve().parent / "js"
README = ROOT / "README.md"
PACKAGE = "taskstate-client"
#: typescript from npm, pinned to a major so that a new compiler cannot change the verdict.
TYPESCRIPT = "typescript@5"
NPM_TIMEOUT = 300.0
NODE_TIMEOUT = 180.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} (Node.js) is not installed")
    return path


def _run(argv: list[str], cwd: Path, timeout: float = NPM_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`npm pack` of frontend/: the package exactly as it would be published."""
    out = tmp_path_factory.mktemp("pack")
    done = _run([_tool("npm"), "pack", "--pack-destination", str(out)], cwd=FRONTEND)
    assert done.returncode == 0, done.stderr
    (packed,) = out.glob(f"{PACKAGE}-*.tgz")
    return packed


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tarball: Path) -> Path:
    """A user's fresh project (an ES module package) with the tarball installed, offline."""
    path = tmp_path_factory.mktemp("consumer")
    (path / "package.json").write_text(json.dumps({"name": "consumer", "private": True, "type": "module"}))
    done = _run([_tool("npm"), "install", "--offline", "--no-audit", "--no-fund", str(tarball)], cwd=path)
    assert done.returncode == 0, done.stderr
    for asset in ("consumer.ts", "node_consumer.ts", "misuse.ts", "seed_examples.test.mjs"):
        shutil.copy(ASSETS / asset, path / asset)
    return path


def test_package_holds_the_manager_and_everything_it_imports(tarball: Path) -> None:
    """The tarball holds the manager's whole module graph (and no UI file), the .d.ts, and
    package.json's exports point at them."""
    with tarfile.open(tarball) as archive:
        names = {Path(name).relative_to("package").as_posix() for name in archive.getnames()}
    graph = _module_graph("task-state-manager.js")
    assert graph <= names, f"imported but not packed: {sorted(graph - names)}"
    assert names == graph | {"package.json", "task-state-manager.d.ts"}, sorted(names - graph)

    manifest = json.loads((FRONTEND / "package.json").read_text())
    assert manifest["name"] == PACKAGE
    assert manifest["type"] == "module"
    assert manifest["exports"]["."] == {
        "types": "./task-state-manager.d.ts",
        "default": "./task-state-manager.js",
    }
    assert manifest["types"] == "./task-state-manager.d.ts"


def _module_graph(entry: str) -> set[str]:
    """The files `entry` imports, directly or not (relative imports in frontend/), and itself."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = (FRONTEND / name).read_text()
        todo += re.findall(r"""^(?:import|export)\b[^;]*?from\s+'\./([\w.-]+\.js)'""", text, re.M)
    return seen


def test_every_public_member_is_declared(project: Path) -> None:
    """The .d.ts keeps up with the class: each public method and accessor of TaskStateManager
    (and of the Emitter it extends) is declared in `declare class TaskStateManager`."""
    script = (
        "import { TaskStateManager } from 'taskstate-client';"
        "const names = new Set();"
        "for (let p = TaskStateManager.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p))"
        "  for (const n of Object.getOwnPropertyNames(p)) if (n !== 'constructor') names.add(n);"
        "for (const n of Object.keys(new TaskStateManager({ baseUrl: 'http://127.0.0.1:1' }))) names.add(n);"
        "console.log(JSON.stringify([...names]));"
    )
    done = _run([_tool("node"), "--input-type=module", "-e", script], cwd=project, timeout=NODE_TIMEOUT)
    assert done.returncode == 0, done.stderr
    members = json.loads(done.stdout)
    assert {"initialize", "startTask", "getJobHistory", "resetAgentState", "on", "pollingFrequency"} <= set(
        members
    )

    declarations = (FRONTEND / "task-state-manager.d.ts").read_text()
    match = re.search(r"^export declare class TaskStateManager \{\n(.*?)^\}", declarations, re.M | re.S)
    assert match, "no `export declare class TaskStateManager` in the .d.ts"
    declared = set(re.findall(r"^\s+(?:readonly\s+)?(\w+)\s*[<(:?]", match.group(1), re.M))
    assert not set(members) - declared, f"not declared in the .d.ts: {sorted(set(members) - declared)}"


#: The .d.ts interfaces that describe an answer of the API, and the OpenAPI schema of each.
DECLARED_SCHEMAS = {
    "Task": "TaskPublic",
    "Schedule": "Schedule",
    "Worker": "WorkerPublic",
    "TaskType": "TaskTypePublic",
    "TaskPage": "TaskPage",
    "TransitionRow": "TransitionPublic",
    "LogLine": "LogLine",
    "Insights": "Insights",
}


async def test_declared_answers_have_the_fields_of_the_openapi_schemas(tmp_path: Path) -> None:
    """Each answer the .d.ts declares has exactly the fields of its schema in the live
    /openapi.json: a field the server adds (or drops) shows here until the types follow."""
    declarations = (FRONTEND / "task-state-manager.d.ts").read_text()
    async with live_server(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}")) as live:
        schemas = (await live.client.get("/openapi.json")).json()["components"]["schemas"]
    for interface, schema in DECLARED_SCHEMAS.items():
        match = re.search(
            rf"^export interface {interface} (?:extends \w+ )?\{{\n(.*?)^\}}", declarations, re.M | re.S
        )
        assert match, f"no `export interface {interface}` in the .d.ts"
        declared = set(re.findall(r"^  readonly (\w+)\??:", match.group(1), re.M))
        fields = set(schemas[schema]["properties"])
        missing, extra = sorted(fields - declared), sorted(declared - fields)
        assert not missing and not extra, (
            f"{interface} vs {schema}: not declared {missing}, not in the API {extra}"
        )


def _tsc(
    project: Path, file: str, resolution: str, lib: str = "es2022,dom"
) -> subprocess.CompletedProcess[str]:
    module = "nodenext" if resolution == "nodenext" else "esnext"
    argv = [_tool("npx"), "--yes", "-p", TYPESCRIPT, "tsc", "--strict", "--noEmit", "--pretty", "false"]
    argv += [
        "--target",
        "es2022",
        "--lib",
        lib,
        "--module",
        module,
        "--moduleResolution",
        resolution,
    ]
    return _run([*argv, file], cwd=project)


@pytest.mark.parametrize(
    ("file", "resolution", "lib"),
    [
        ("consumer.ts", "nodenext", "es2022,dom"),  # node's resolution, through `exports`
        ("consumer.ts", "bundler", "es2022,dom"),  # a bundler's (Vite, webpack, esbuild)
        ("node_consumer.ts", "nodenext", "es2022"),  # no DOM types: the .d.ts needs none
    ],
)
def test_typed_consumer_compiles_under_strict(project: Path, file: str, resolution: str, lib: str) -> None:
    done = _tsc(project, file, resolution, lib)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_misuse_fails_to_type_check(project: Path) -> None:
    """Every line marked MISUSE gets an error, and no other line does: the failure is for the
    reason written beside it, not an unrelated one (a missing module, a syntax error)."""
    done = _tsc(project, "misuse.ts", "nodenext")
    assert done.returncode != 0, "the misuses type-checked"
    lines = (project / "misuse.ts").read_text().splitlines()
    expected = {number for number, line in enumerate(lines, 1) if "// MISUSE" in line}
    assert len(expected) >= 10
    failed = {int(n) for n in re.findall(r"^misuse\.ts\((\d+),\d+\): error TS\d+", done.stdout, re.M)}
    assert failed == expected, (
        f"missing errors: {sorted(expected - failed)}, unexpected: {sorted(failed - expected)}\n{done.stdout}"
    )


# -- seed 000's examples, live ----------------------------------------------------------------


class AgentPreferences(BaseModel):
    """Seed 000's `preferences`; `run_mode` also picks how the test's agent behaves."""

    model_config = ConfigDict(extra="forbid")

    #: full: three phases, then done; endless: runs until cancelled; broken: fails.
    run_mode: Literal["full", "endless", "broken"] = "full"
    skip_fetch_bookmarks: bool = False
    force_recache_tweets: bool = False


def agent_registry() -> JobRegistry:
    """The tests' jobs and the seed's `agent`, which reports progress phase by phase."""
    registry = make_registry()

    @registry.job("agent", params=AgentPreferences)
    async def agent(ctx: JobContext, preferences: AgentPreferences) -> dict[str, Any]:
        if preferences.run_mode == "broken":
            raise RuntimeError("the bookmarks service answered 503")
        phases = ["fetch_bookmarks", "cache_tweets", "process"]
        if preferences.skip_fetch_bookmarks:
            phases.remove("fetch_bookmarks")
        for done, phase in enumerate(phases, 1):
            await ctx.sleep(3600 if preferences.run_mode == "endless" else 0.3)
            ctx.progress(100 * done / len(phases), f"{phase} done", phase=phase, items_processed=done)
        return {"phases": phases}

    return registry


@pytest.fixture
async def agent_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'seed.db'}")
    async with live_server(settings, agent_registry()) as live:
        yield live


async def test_seed_examples_run_in_node_against_a_live_server(
    agent_server: LiveServer, project: Path
) -> None:
    """`node --test` on the seed's examples: every test in it passes, against this server."""
    env = {"TASKSTATE_URL": agent_server.base_url, "AT_ONCE": "6"}
    code, report = await _node(project, "--test", "--test-reporter=tap", "seed_examples.test.mjs", env=env)
    assert code == 0, report
    assert re.search(r"^# pass 5$", report, re.M), report
    assert re.search(r"^# fail 0$", report, re.M), report

    # What node saw is what the server holds: six completed, one failed, three reset.
    page = (await agent_server.client.get("/api/v2/tasks", params={"type": "agent", "limit": 50})).json()
    states = sorted(task["state"] for task in page["items"])
    assert states == ["cancelled"] * 3 + ["completed"] * 6 + ["failed"]
    assert all(task["trigger"] == "manual" for task in page["items"])
    assert (await agent_server.client.get("/api/v2/tasks/active")).json()["items"] == []


async def test_readme_example_runs_as_printed(tmp_path: Path, project: Path) -> None:
    """README's TaskStateManager example, taken from its section, runs in node against a live
    server (demo jobs): it starts its task, reads the history and resets, without an error."""
    section = re.search(
        r"^## TaskStateManager in your own front end\n(.*?)(?=^## )", README.read_text(), re.S | re.M
    )
    assert section, "README has no 'TaskStateManager in your own front end' section"
    block = re.search(r"```js\n(.*?)```", section.group(1), re.S)
    assert block and "from 'taskstate-client'" in block.group(1)
    async with live_server(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'readme.db'}")) as live:
        example = block.group(1).replace("http://127.0.0.1:8000", live.base_url)
        (project / "readme_example.mjs").write_text(example)
        code, output = await _node(project, "readme_example.mjs")
        assert code == 0, output
        assert re.search(r"^0 completed", output, re.M), output
        page = (await live.client.get("/api/v2/tasks", params={"type": "demo.sleep"})).json()
        assert [task["state"] for task in page["items"]] == ["cancelled"], page


async def _node(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`node ARGV` (with the WebSocket node 20 keeps behind a flag), to its end: code and output."""
    node = _tool("node")
    flags = ["--experimental-websocket"] if int(_node_major(node)) < 22 else []
    process = await asyncio.create_subprocess_exec(
        node, *flags, *argv,
        cwd=cwd, env={**os.environ, "NO_COLOR": "1", **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(NODE_TIMEOUT):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        raise AssertionError(f"node {argv} still running after {NODE_TIMEOUT}s:\n{out.decode()}") from None
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


def _node_major(node: str) -> str:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return version.strip().lstrip("v").split(".")[0]


# -- the served stable path ---------------------------------------------------------------------


async def test_stable_path_serves_the_module_graph_as_javascript(tmp_path: Path, tarball: Path) -> None:
    """GET /task-state-manager.js (and each module it imports, beside it) answers JavaScript,
    the same bytes as the package's files: a page anywhere can `import` it from the server."""
    with tarfile.open(tarball) as archive:
        packed = {
            Path(member.name).name: archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.name.endswith(".js")
        }
    assert "task-state-manager.js" in packed
    async with live_server(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'served.db'}")) as live:
        for name, content in packed.items():
            answer = await live.client.get(f"/{name}")
            assert answer.status_code == 200, name
            media = answer.headers["content-type"].split(";")[0].strip()
            assert media in {"text/javascript", "application/javascript"}, (name, media)
            assert answer.content == content, name
        assert b"export class TaskStateManager" in (await live.client.get("/task-state-manager.js")).content
        declarations = await live.client.get("/task-state-manager.d.ts")
        assert declarations.status_code == 200
        assert b"export declare class TaskStateManager" in declarations.content
