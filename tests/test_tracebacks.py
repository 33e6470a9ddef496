"""A failed job's traceback: recorded with the failure, bounded, its own per task, absent from
a retry, read by `GET /tasks/{id}` only. On SQLite and PostgreSQL, against a live server."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from taskstate.runtime.tracebacks import HEAD_CHARS, MAX_TRACEBACK_CHARS, bounded
from tests.support.servers import LiveServer

shared_loop = pytest.mark.asyncio(loop_scope="module")


def frames_of_descend(tb: str) -> int:
    """How many `descend_and_raise` frames `tb` stands for (Python folds a repeated line
    into `[Previous line repeated N more times]`)."""
    repeated = re.search(r"\[Previous line repeated (\d+) more times?\]", tb)
    return tb.count("in descend_and_raise") + (int(repeated.group(1)) if repeated else 0)


def test_bounded_keeps_head_and_tail_and_says_what_was_cut() -> None:
    text = "H" * 10_000 + "M" * 100_000 + "T" * 10_000
    short = bounded(text)
    assert len(short) <= MAX_TRACEBACK_CHARS
    assert short.startswith("H" * HEAD_CHARS)
    assert short.endswith("T" * 10_000)
    assert "characters of the traceback cut" in short
    kept = len(short) - len(short.split("\n")[1]) - 2  # the marker line and its newlines
    cut = int(short.split("[... ")[1].split(" ")[0])
    assert kept + cut == len(text), "the marker says exactly how much is missing"
    assert bounded("small") == "small"


@shared_loop
async def test_a_failed_job_keeps_the_traceback_of_its_raise(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("test.fail", params={"depth": 30, "tag": "deep"})
    failed = await server.wait_for(task["id"])
    assert (failed["state"], failed["error_type"]) == ("failed", "ValueError")
    tb = failed["traceback"]
    assert tb is not None and tb.startswith("Traceback (most recent call last):")
    assert frames_of_descend(tb) == 31, "every frame of the deep stack is there"
    assert 'tests/jobs.py", line' in tb and "raise ValueError(message)" in tb
    assert tb.rstrip().endswith("ValueError: failure deep")


@shared_loop
async def test_lists_and_events_leave_the_traceback_out(shared_server: LiveServer) -> None:
    server = shared_server
    tag = uuid.uuid4().hex
    task = await server.create("test.fail", params={"tag": tag})
    await server.wait_for(task["id"])
    page = (await server.client.get("/api/v2/tasks", params={"q": task["name"], "limit": 5})).json()
    assert page["items"] and all("traceback" not in item for item in page["items"])
    assert "traceback" in (await server.get(task["id"]))
    spec = (await server.client.get("/openapi.json")).json()
    schema = spec["paths"]["/api/v2/tasks/{task_id}"]["get"]["responses"]["200"]["content"]
    assert schema["application/json"]["schema"]["$ref"].endswith("/TaskDetail")
    assert "traceback" in spec["components"]["schemas"]["TaskDetail"]["properties"]
    assert "traceback" not in spec["components"]["schemas"]["TaskPublic"]["properties"]


@shared_loop
async def test_a_huge_traceback_is_bounded_with_its_end_kept(shared_server: LiveServer) -> None:
    """400 frames and a 1 MB message: the stored text is at most 16 KiB, with the start of the
    stack, the raising line and the end of the message."""
    server = shared_server
    task = await server.create("test.fail", params={"depth": 400, "message_size": 1_000_000, "tag": "huge"})
    tb = (await server.wait_for(task["id"]))["traceback"]
    assert len(tb) <= MAX_TRACEBACK_CHARS
    assert tb.startswith("Traceback (most recent call last):")
    assert "characters of the traceback cut ...]" in tb
    assert tb.rstrip().endswith("m" * 1000)


@shared_loop
async def test_concurrent_failures_each_keep_their_own_traceback(shared_server: LiveServer) -> None:
    server = shared_server
    tags = [f"t{i}-{uuid.uuid4().hex[:6]}" for i in range(12)]
    created = await asyncio.gather(
        *(server.create("test.fail", params={"depth": i, "tag": tag}) for i, tag in enumerate(tags))
    )
    finished = await asyncio.gather(*(server.wait_for(t["id"]) for t in created))
    for depth, (tag, task) in enumerate(zip(tags, finished, strict=True)):
        tb = task["traceback"]
        assert tb.rstrip().endswith(f"ValueError: failure {tag}"), (tag, tb[-200:])
        assert frames_of_descend(tb) == depth + 1
        assert all(other not in tb for other in tags if other != tag)


@shared_loop
async def test_a_retry_starts_without_a_traceback(shared_server: LiveServer) -> None:
    server = shared_server
    tag = uuid.uuid4().hex
    original = await server.create("test.fail", params={"tag": tag, "once": True})
    assert (await server.wait_for(original["id"]))["traceback"]
    response = await server.client.post(f"/api/v2/tasks/{original['id']}/retry")
    assert response.status_code == 201, response.text
    retry = await server.wait_for(response.json()["id"])
    assert (retry["state"], retry["traceback"], retry["error"]) == ("completed", None, None)
    assert (await server.get(original["id"]))["traceback"], "the original keeps its own"


@shared_loop
async def test_a_timeout_records_where_the_job_was_waiting(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("test.gate", params={"gate": f"never-{uuid.uuid4().hex}"}, timeout_seconds=0.3)
    failed = await server.wait_for(task["id"])
    assert failed["reason"] == "timeout"
    assert "in wait_for_gate" in failed["traceback"]
    completed = await server.create("test.echo", params={})
    assert (await server.wait_for(completed["id"]))["traceback"] is None
