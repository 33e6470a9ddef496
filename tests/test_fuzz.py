"""Fuzzing the HTTP API with schemathesis, from the live server's own `/openapi.json`.

Every operation gets a bounded number of generated requests, valid ones and invalid ones
(schemathesis' positive and negative modes), sent over real HTTP to a real uvicorn. Each
answer must not be a 5xx, and must be what the document promises: a documented status code,
the documented content type, and a body that validates against the documented schema.

Schemathesis' pytest integration is synchronous (it uses `requests`), so the server runs in
this process on an event loop of its own, in a thread. Its lazy loader
(`schemathesis.pytest.from_fixture`) fails under pytest 9 (it sets `Function._nodeid`), so the
schema is read from the same app's document at import, and a test checks that it is exactly
what the live server serves at `/openapi.json`. `POST /api/v2/admin/reset` is fuzzed too: it
cancels whatever the other operations started, which is allowed.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed (pip install schemathesis)"
)

import httpx  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskstate.app import create_app  # noqa: E402
from taskstate.runtime.demo_jobs import register as register_demo_jobs  # noqa: E402
from taskstate.runtime.registry import JobRegistry  # noqa: E402
from tests.support.servers import live_server, make_settings  # noqa: E402

#: Generated examples per operation and generation mode (positive, negative), on each of the
#: ~20 operations: the whole run stays well under 90 s on the CI machine. Generation is
#: derandomized, so that CI runs the same cases every time; set TASKSTATE_FUZZ_EXAMPLES (say,
#: 500) and TASKSTATE_FUZZ_RANDOM=1 for a deeper, different run by hand.
EXAMPLES_PER_OPERATION = int(os.environ.get("TASKSTATE_FUZZ_EXAMPLES", "40"))
DERANDOMIZE = os.environ.get("TASKSTATE_FUZZ_RANDOM") != "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

#: Fewest generated cases each operation must get for its fuzzing to mean something.
MIN_CASES_PER_OPERATION = 5

#: For the summary printed after the module (never read by a test): cases run per operation.
REPORT: dict[str, int] = {}


class ThreadedServer:
    """`live_server` (a real uvicorn on a loopback port) on its own event loop in a thread."""

    def __init__(self, database_url: str) -> None:
        self.settings = make_settings(database_url, max_concurrent_tasks=2)
        self.base_url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fuzz-server", daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with live_server(self.settings, _registry()) as live:
                self.base_url = live.base_url
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(60) or not self.base_url:
            raise RuntimeError(f"the server did not start: {self._error!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the fuzzed server did not shut down within 60 s"
        if self._error is not None:
            raise self._error


def _document() -> dict[str, Any]:
    """The OpenAPI document, as the app builds it (the test checks that the live one is the same)."""
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", max_concurrent_tasks=2), _registry())
    return app.openapi()


def _registry() -> JobRegistry:
    # Demo jobs only: fuzzed task types never reach the tests' crashing jobs.
    registry = JobRegistry()
    register_demo_jobs(registry)
    return registry


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[ThreadedServer]:
    database = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    started = time.monotonic()
    with ThreadedServer(f"sqlite+aiosqlite:///{database}") as server:
        yield server
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if REPORT and reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown in every run, not only on failure
            reporter.write_line("")
            reporter.write_line(
                f"schemathesis: {sum(REPORT.values())} cases over {len(REPORT)} operations "
                f"in {time.monotonic() - started:.0f}s"
            )
            for label, count in sorted(REPORT.items()):
                reporter.write_line(f"  {count:5d}  {label}")


schema = schemathesis.openapi.from_dict(DOCUMENT := _document())
schema.config.generation.update(max_examples=EXAMPLES_PER_OPERATION)


def test_the_fuzzed_document_is_the_live_one(fuzz_server: ThreadedServer) -> None:
    with httpx.Client(base_url=fuzz_server.base_url, timeout=30) as client:
        live = client.get("/openapi.json").json()
    assert live == DOCUMENT
    assert len(live["paths"]) >= 15


@dataclass
class CaseCount:
    """The cases hypothesis ran in one test of one operation (the fixture lives for the whole
    test, not for one example)."""

    label: str = ""
    cases: int = 0


@pytest.fixture
def case_count() -> Iterator[CaseCount]:
    count = CaseCount()
    yield count
    REPORT[count.label] = count.cases
    assert count.cases >= MIN_CASES_PER_OPERATION, f"{count.label}: only {count.cases} cases were run"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
def test_every_operation_answers_as_documented(
    case: Any, fuzz_server: ThreadedServer, case_count: CaseCount
) -> None:
    case_count.label = f"{case.operation.method.upper()} {case.operation.path}"
    case_count.cases += 1
    case.call_and_validate(base_url=fuzz_server.base_url, checks=CHECKS, timeout=30)


def test_every_operation_of_the_document_is_fuzzed() -> None:
    """`test_every_operation_answers_as_documented` is parametrized with every operation of
    the document (each of them then asserts its own number of cases)."""
    documented = {f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items() for method in item}
    fuzzed = {result.ok().label for result in schema.get_all_operations()}
    assert fuzzed == documented
    assert len(fuzzed) >= 15


def test_unparseable_bodies_get_a_documented_answer(fuzz_server: ThreadedServer) -> None:
    """A body that is not UTF-8 JSON, on every operation that takes a body: the answer must be a
    status the document lists for that operation, with the contract's error body. (What the
    fuzzer found; this makes it deterministic.)"""
    failures = []
    with httpx.Client(base_url=fuzz_server.base_url, timeout=30) as client:
        for path, item in DOCUMENT["paths"].items():
            for method, operation in item.items():
                if "requestBody" not in operation:
                    continue
                url = path.replace("{task_id}", str(uuid.uuid4())).replace("{question_id}", str(uuid.uuid4()))
                url = re.sub(r"\{[a-z_]+\}", "x", url)
                response = client.request(
                    method, url, content=b"\xff\xfe{", headers={"content-type": "application/json"}
                )
                documented = set(operation["responses"])
                body = response.json()
                if str(response.status_code) not in documented or not {"error", "detail"} <= set(body):
                    failures.append(
                        f"{method.upper()} {path}: {response.status_code} {body} "
                        f"(documented: {sorted(documented)})"
                    )
    assert not failures, "\n".join(failures)
