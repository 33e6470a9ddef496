"""README's "Embedding in your FastAPI app" example, imported as it is printed there."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

README = Path(__file__).resolve().parent.parent.parent / "README.md"

#: The tests' short intervals, as `make_settings` has them, in the environment the example reads.
SHORT_INTERVALS = {
    "TASKSTATE_POLL_SECONDS": "0.2",
    "TASKSTATE_HEARTBEAT_SECONDS": "0.5",
    "TASKSTATE_PROGRESS_FLUSH_SECONDS": "0.1",
    "TASKSTATE_SHUTDOWN_GRACE_SECONDS": "0.3",
}


def embedding_section() -> str:
    text = README.read_text()
    section = re.search(r"^## Embedding in your FastAPI app\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README has no 'Embedding in your FastAPI app' section"
    return section.group(1)


def readme_app() -> str:
    """The section's `# myapp.py` block."""
    block = re.search(r"```python\n(# myapp\.py\n.*?)```", embedding_section(), re.S)
    assert block, "README's embedding section has no myapp.py example"
    return block.group(1)


def readme_commands() -> tuple[list[str], dict[str, object]]:
    """The section's shell block: the command that serves the app (as words) and the body
    its `curl` posts."""
    block = re.search(r"```sh\n(.*?)```", embedding_section(), re.S)
    assert block, "README's embedding section has no shell block"
    serve = next(line for line in block.group(1).splitlines() if "uvicorn myapp:app" in line)
    body = re.search(r"-d '(\{.*?\})'", block.group(1))
    assert body, "README's embedding section posts no task"
    return shlex.split(serve, comments=True), json.loads(body.group(1))


@contextmanager
def imported_readme_app(
    workdir: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    env: Mapping[str, str] = SHORT_INTERVALS,
) -> Iterator[ModuleType]:
    """README's myapp.py, written to `workdir` and imported (under a name of its own) with
    `DATABASE_URL` and `env` in the environment, as README's command runs it."""
    for name, value in {"DATABASE_URL": database_url, **env}.items():
        monkeypatch.setenv(name, value)
    path = workdir / "myapp.py"
    path.write_text(readme_app())
    name = f"myapp_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
