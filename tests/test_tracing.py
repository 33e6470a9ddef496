"""OpenTelemetry tracing (TASKSTATE_TRACING=1, the `tracing` extra): a span per request
(FastAPI's) and per job run (ours), exported by OTLP to a collector; and when it is off, no
span and no import of the SDK, even where the process has a tracer provider."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ServerProcess
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.waits import wait_for_task

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed")

from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

ROOT = Path(__file__).resolve().parent.parent
_EXPORTER = InMemorySpanExporter()


class _WhileRecording(SimpleSpanProcessor):
    """Keeps spans only while a test of this module asks for them: the provider outlives
    the test (it is the process's), and other tests' apps may use it."""

    recording = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording.is_set():
            super().on_end(span)


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """The spans this process's tracer provider ends, kept in memory. The provider is set
    once per process, as OpenTelemetry allows; taskstate (and FastAPI) then use it."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_WhileRecording(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    _WhileRecording.recording.set()
    try:
        yield _EXPORTER
    finally:
        _WhileRecording.recording.clear()
        _EXPORTER.clear()


async def run_mixed_tasks(server: LiveServer, traceparent: str | None = None) -> list[dict[str, Any]]:
    """Five sleeps, a failure and a cancelled task, at once; the last created with `traceparent`."""
    sleeps = await asyncio.gather(
        *(server.create("demo.sleep", params={"seconds": 0.3, "steps": 3}) for _ in range(5))
    )
    failing = await server.create("demo.fail", params={"message": "on purpose"})
    body = {"type": "test.gate", "params": {"gate": "never"}}
    headers = {"traceparent": traceparent} if traceparent else {}
    gated = (await server.client.post("/api/v2/tasks", json=body, headers=headers)).json()
    await server.wait_for(gated["id"], "running")
    assert (await server.client.post(f"/api/v2/tasks/{gated['id']}/cancel")).status_code == 200
    created = [*sleeps, failing, gated]
    done = await asyncio.gather(*(server.wait_for(task["id"]) for task in created))
    assert [task["state"] for task in done] == ["completed"] * 5 + ["failed", "cancelled"]
    await server.assert_nothing_left_running()
    return created


async def test_a_span_per_job_run_and_per_request(database_url: str, exported: InMemorySpanExporter) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with live_server(make_settings(database_url, tracing=True)) as server:
        created = await run_mixed_tasks(server, f"00-{trace_id}-00f067aa0ba902b7-01")
        ids = {task["id"] for task in created}

        def job_spans() -> list[ReadableSpan]:
            return [
                s
                for s in exported.get_finished_spans()
                if s.kind is SpanKind.CONSUMER and s.attributes and s.attributes["taskstate.task.id"] in ids
            ]

        for _ in range(100):  # a run's span ends a moment after its task's last transition
            if len(job_spans()) >= len(ids):
                break
            await asyncio.sleep(0.05)
        runs = {s.attributes["taskstate.task.id"]: s for s in job_spans() if s.attributes}
        assert len(job_spans()) == len(runs) == len(ids), [s.name for s in job_spans()]
        worker_id = server.services.supervisor.worker_id
    for task in created:
        span = runs[task["id"]]
        assert span.parent is None, "a job's span is a root span"
        assert span.name == f"run {task['type']}"
        assert span.attributes is not None
        assert span.attributes["taskstate.task.type"] == task["type"]
        assert span.attributes["taskstate.task.attempt"] == 1
        assert span.attributes["taskstate.worker.id"] == worker_id
        assert span.start_time is not None and span.end_time is not None
        assert span.end_time > span.start_time
    outcomes = [dict(runs[task["id"]].attributes or {})["taskstate.task.outcome"] for task in created]
    assert outcomes == ["completed"] * 5 + ["failed", "cancelled"]
    failed = runs[created[5]["id"]]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "on purpose"
    assert dict(failed.attributes or {})["error.type"] == "DemoFailure"
    assert runs[created[0]["id"]].status.status_code is StatusCode.UNSET

    requests = [s for s in exported.get_finished_spans() if s.kind is SpanKind.SERVER]
    creations = [s for s in requests if s.name == "POST /api/v2/tasks"]
    assert len(creations) == len(created), [s.name for s in requests]
    assert {dict(s.attributes or {})["taskstate.task.id"] for s in creations} == ids
    assert all(dict(s.attributes or {})["http.response.status_code"] == 201 for s in creations)
    # The caller's traceparent is continued; the other requests start traces of their own.
    continued = [s for s in creations if s.context and format(s.context.trace_id, "032x") == trace_id]
    assert len(continued) == 1 and continued[0].parent is not None
    assert dict(continued[0].attributes or {})["taskstate.task.id"] == created[6]["id"]
    cancels = [s for s in requests if s.name == "POST /api/v2/tasks/{task_id}/cancel"]
    assert len(cancels) == 1
    assert dict(cancels[0].attributes or {})["http.route"] == "/api/v2/tasks/{task_id}/cancel"


async def test_no_span_when_tracing_is_off_even_with_a_provider(
    database_url: str, exported: InMemorySpanExporter
) -> None:
    """The process has a tracer provider (an app that embeds taskstate may): tracing off,
    taskstate makes no span of its requests or its jobs all the same."""
    async with live_server(make_settings(database_url)) as server:
        await run_mixed_tasks(server, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        assert (await server.client.get("/metrics")).status_code == 200
    assert exported.get_finished_spans() == ()


class Collector:
    """An OTLP/HTTP trace receiver on a loopback port: what the exporter posts, decoded."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                assert self.path == "/v1/traces"
                for resource_spans in request.resource_spans:
                    service = {
                        a.key: a.value.string_value for a in resource_spans.resource.attributes
                    }.get("service.name")
                    for scope_spans in resource_spans.scope_spans:
                        collector.spans.extend((service, span) for span in scope_spans.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.close()


def attributes(span: Any) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


async def serve_tasks(server: ServerProcess, types: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        responses = await asyncio.gather(
            *(client.post("/api/v2/tasks", json={"type": t, "params": p}) for t, p in types)
        )
        ids = [r.json()["id"] for r in responses]
        await asyncio.gather(*(wait_for_task(client, task_id, within=20) for task_id in ids))
    return ids


async def test_taskstate_serve_exports_spans_to_an_otlp_collector_only_when_on(
    tmp_path: Path, collector: Collector
) -> None:
    """`taskstate serve` with the standard OTEL_* variables: the spans reach the collector
    (service `taskstate-test`); the same server with tracing off sends nothing."""
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "taskstate-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    work = [("demo.sleep", {"seconds": 0.2})] * 3 + [("demo.fail", {"message": "boom"})]
    off = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'off.db'}", tmp_path, name="off", **otel)
    try:
        await off.start()
        await serve_tasks(off, work)
    finally:
        await off.terminate()
    assert collector.spans == [], "tracing is off: nothing may be exported"

    on = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'on.db'}", tmp_path, name="on", TASKSTATE_TRACING="1", **otel
    )
    try:
        await on.start()
        ids = await serve_tasks(on, work)
        for _ in range(100):
            runs = [s for _, s in collector.spans if s.name.startswith("run ")]
            if len(runs) >= len(ids):
                break
            await asyncio.sleep(0.05)
    finally:
        await on.terminate()
    assert {service for service, _ in collector.spans} == {"taskstate-test"}
    runs = [attributes(s) for _, s in collector.spans if s.name.startswith("run ")]
    by_id = {a["taskstate.task.id"]: a for a in runs}
    assert len(runs) == len(by_id) == len(ids), runs
    assert [by_id[i]["taskstate.task.outcome"] for i in ids] == ["completed"] * 3 + ["failed"]
    assert by_id[ids[3]]["error.type"] == "DemoFailure"
    created = [attributes(s) for _, s in collector.spans if s.name == "POST /api/v2/tasks"]
    assert sorted(a["taskstate.task.id"] for a in created) == sorted(ids)


_RUN_TASKS_AND_LIST_MODULES = """
import asyncio, json, sys, tempfile
from tests.support.servers import live_server, make_settings

async def main(tracing):
    with tempfile.TemporaryDirectory() as directory:
        settings = make_settings(f"sqlite+aiosqlite:///{directory}/t.db", tracing=tracing)
        async with live_server(settings) as server:
            tasks = await asyncio.gather(
                *(server.create("demo.sleep", params={"seconds": 0.1}) for _ in range(3)),
                server.create("demo.fail", params={"message": "x"}),
            )
            done = await asyncio.gather(*(server.wait_for(task["id"]) for task in tasks))
            assert sorted(task["state"] for task in done) == ["completed"] * 3 + ["failed"], done
            assert (await server.client.get("/metrics")).status_code == 200
    print("modules:", json.dumps(sorted(sys.modules)))

asyncio.run(main(sys.argv[1] == "on"))
"""


@pytest.mark.parametrize("tracing", ["off", "on"])
def test_the_sdk_and_our_tracing_are_imported_only_when_tracing_is_on(
    tracing: str, collector: Collector
) -> None:
    """In a process of its own that serves requests and runs jobs (one fails), with an OTLP
    endpoint set and FastAPI told by its own variable to configure itself: off, neither the
    SDK nor taskstate.tracing is loaded. On, the same check sees them: it can fail.
    (The OpenTelemetry API is always loaded: FastAPI imports it.)"""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(ROOT),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "FASTAPI_OTEL_AUTO_CONFIGURE": "true",
    }
    ran = subprocess.run(
        [sys.executable, "-c", _RUN_TASKS_AND_LIST_MODULES, tracing],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    [line] = [x for x in ran.stdout.splitlines() if x.startswith("modules: ")]
    modules = set(json.loads(line.removeprefix("modules: ")))
    ours = {"opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http", "taskstate.tracing"}
    if tracing == "off":
        assert not ours & modules
        assert not any(m.startswith("opentelemetry.sdk") for m in modules)
    else:
        assert ours <= modules


async def test_a_run_handed_back_at_shutdown_ends_its_span_as_queued(
    database_url: str, exported: InMemorySpanExporter
) -> None:
    settings = make_settings(database_url, tracing=True, shutdown_grace_seconds=0.2)
    async with live_server(settings) as server:
        task = await server.create("test.gate", params={"gate": "never"})
        await server.wait_for(task["id"], "running")
    async with live_server(make_settings(database_url, run_supervisor=False)) as again:
        assert (await again.get(task["id"]))["state"] == "queued"
    [span] = [
        s
        for s in exported.get_finished_spans()
        if s.kind is SpanKind.CONSUMER and dict(s.attributes or {})["taskstate.task.id"] == task["id"]
    ]
    assert dict(span.attributes or {})["taskstate.task.outcome"] == "queued"
    assert span.status.status_code is StatusCode.UNSET
