"""Recovery with real processes and real signals: nothing is ever left stuck.

Each test runs `taskstate serve` as a subprocess on the test's database,
kills it (SIGKILL, or SIGTERM for the graceful path), restarts it on the
same database, and reads the task's transition rows.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import create_task, get_task, get_transitions
from tests.support.processes import ServerProcess
from tests.support.waits import wait_for_task

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def proc(database_url: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(database_url, tmp_path)
    try:
        yield server
    finally:
        server.stop_quietly()


async def rows(base_url: str, task_id: str) -> list[tuple[str | None, str, str, str]]:
    return [
        (r["from_state"], r["to_state"], r["reason"], r["actor"])
        for r in await get_transitions(base_url, task_id)
    ]


def path_of(transitions: list[tuple[str | None, str, str, str]]) -> list[str]:
    return [transitions[0][0] or "∅"] + [to for _, to, _, _ in transitions]


async def test_sigkill_mid_count_resumes_from_checkpoint(proc: ServerProcess) -> None:
    await proc.start()
    task = await create_task(proc.url, "demo.count", params={"to": 40, "delay": 0.05})
    await wait_for_task(
        proc.url, task["id"], until=lambda t: t["items_processed"] >= 5 and t["has_checkpoint"], within=30
    )
    await proc.kill()

    await proc.start()
    ready = time.monotonic()
    requeued = await wait_for_task(
        proc.url, task["id"], until=lambda t: t["restoration_count"] >= 1, within=30
    )
    recovery = time.monotonic() - ready
    done = await wait_for_task(proc.url, task["id"], until=lambda t: t["is_terminal"], within=30)

    assert done["state"] == "completed", done
    assert done["result"]["final"] == 40
    # It resumed from its checkpoint, not from 0.
    assert done["result"]["counted_from_restart"] >= 5
    assert done["restoration_count"] == 1
    assert done["restoration_source"] == "worker_lost"
    assert done["last_restored_at"] is not None
    assert done["restoration_decision"] == "checkpoint: from the last checkpoint"  # CONTRACT §6 codes
    assert done["attempt"] == 2
    transitions = await rows(proc.url, task["id"])
    assert path_of(transitions) == [
        "∅",
        "queued",
        "preparing",
        "running",
        "orphaned",
        "queued",
        "preparing",
        "running",
        "collecting",
        "completed",
    ]
    assert transitions[3][2:] == ("worker_lost", "sweeper")
    assert transitions[4][2:] == ("worker_lost", "sweeper")
    # Once the server is up: the orphan timeout (2 s) plus a sweep (0.5 s), with slack for a busy machine.
    assert recovery < 2 + 0.5 + 3, f"re-queued {recovery:.1f}s after the restart"
    assert requeued["restoration_count"] == 1


@pytest.mark.parametrize("job", ["test.slow_prepare", "test.slow_collect"])
async def test_sigkill_in_preparing_or_collecting(proc: ServerProcess, job: str) -> None:
    await proc.start()
    task = await create_task(proc.url, job, params={"seconds": 60})
    blocked_in = "preparing" if job == "test.slow_prepare" else "collecting"
    await wait_for_task(proc.url, task["id"], until=lambda t: t["state"] == blocked_in, within=30)
    await proc.kill()
    await proc.start()
    done = await wait_for_task(proc.url, task["id"], until=lambda t: t["is_terminal"], within=30)
    assert done["state"] == "completed"
    assert done["restoration_count"] == 1
    path = path_of(await rows(proc.url, task["id"]))
    i = path.index("orphaned")
    assert path[i - 1] == blocked_in
    assert path[i:] == ["orphaned", "queued", "preparing", "running", "collecting", "completed"]


async def test_sigterm_hands_back_and_restart_resumes_at_once(database_url: str, tmp_path: Path) -> None:
    # A long orphan timeout: the restart must not need the sweeper to pick the task up.
    proc = ServerProcess(database_url, tmp_path, TASKSTATE_ORPHAN_AFTER_SECONDS=60)
    try:
        await proc.start()
        task = await create_task(proc.url, "demo.count", params={"to": 60, "delay": 0.05})
        await wait_for_task(
            proc.url, task["id"], until=lambda t: t["items_processed"] >= 5 and t["has_checkpoint"], within=30
        )
        code = await proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal: 128 + 15 to a shell.
        assert code in (0, -signal.SIGTERM), proc.log_text()
        restarted = time.monotonic()
        await proc.start()
        await wait_for_task(
            proc.url,
            task["id"],
            until=lambda t: t["state"] in ("running", "collecting", "completed"),
            within=30,
        )
        resumed = time.monotonic() - restarted
        done = await wait_for_task(proc.url, task["id"], until=lambda t: t["is_terminal"], within=30)
        transitions = await rows(proc.url, task["id"])
    finally:
        proc.stop_quietly()
    assert resumed < 10, f"resumed {resumed:.1f}s after the restart"
    assert done["state"] == "completed"
    assert done["restoration_source"] == "server_restart"
    assert done["restoration_count"] == 1
    assert done["attempt"] == 1, "a graceful restart does not use up an attempt"
    assert done["result"]["counted_from_restart"] >= 5
    handback = [(f, t, reason) for f, t, reason, _ in transitions if reason == "server_restart"]
    assert handback == [("running", "orphaned", "server_restart"), ("orphaned", "queued", "server_restart")]


async def test_a_task_that_kills_its_worker_ends_attempts_exhausted(proc: ServerProcess) -> None:
    await proc.start()
    task = await create_task(proc.url, "test.crash", max_attempts=2)
    for _ in range(4):
        await proc.wait_exit(timeout=30)  # the job kills the server
        await proc.start()
        state = (await get_task(proc.url, task["id"]))["state"]
        if state == "failed":
            break
        try:
            await wait_for_task(proc.url, task["id"], until=lambda t: t["state"] == "failed", within=6)
            break
        except (AssertionError, httpx.TransportError):
            continue  # it crashed the server again
    done = await wait_for_task(proc.url, task["id"], until=lambda t: t["is_terminal"], within=30)
    assert done["state"] == "failed"
    assert done["reason"] == "attempts_exhausted"
    assert done["attempt"] == 2
    assert done["error_type"] == "WorkerLost"
    path = path_of(await rows(proc.url, task["id"]))
    assert path.count("orphaned") == 2
    assert path[-2:] == ["orphaned", "failed"]


async def test_a_service_killed_while_serving_comes_back_serving(proc: ServerProcess) -> None:
    await proc.start()
    task = await create_task(proc.url, "demo.serve")
    await wait_for_task(proc.url, task["id"], until=lambda t: t["state"] == "serving", within=30)
    await proc.kill()
    await proc.start()
    back = await wait_for_task(
        proc.url,
        task["id"],
        until=lambda t: t["state"] == "serving" and t["restoration_count"] == 1,
        within=30,
    )
    assert back["restoration_source"] == "worker_lost"
    path = path_of(await rows(proc.url, task["id"]))
    assert path[4:] == ["serving", "orphaned", "queued", "preparing", "running", "serving"]
    async with httpx.AsyncClient(base_url=proc.url) as client:
        assert (await client.post(f"/api/v2/tasks/{task['id']}/stop")).status_code == 200
    done = await wait_for_task(proc.url, task["id"], until=lambda t: t["is_terminal"], within=30)
    assert done["state"] == "completed"


async def pending_question(base_url: str, task_id: str) -> dict[str, Any]:
    task = await wait_for_task(base_url, task_id, until=lambda t: bool(t["pending_questions"]), within=30)
    question: dict[str, Any] = task["pending_questions"][0]
    return question


async def answer(base_url: str, task_id: str, question_id: str, value: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.post(
            f"/api/v2/tasks/{task_id}/questions/{question_id}/answer", json={"answer": value}
        )


async def test_a_question_survives_a_crash_and_is_not_asked_twice(proc: ServerProcess) -> None:
    await proc.start()
    task = await create_task(proc.url, "demo.ask", params={"question": "Ship it?", "choices": ["yes", "no"]})
    before = await pending_question(proc.url, task["id"])
    await proc.kill()
    await proc.start()
    # Restored: the same question is shown (not a second one), and answering it completes the task.
    await wait_for_task(
        proc.url,
        task["id"],
        until=lambda t: t["restoration_count"] == 1 and t["state"] == "running",
        within=30,
    )
    after = await pending_question(proc.url, task["id"])
    assert after["id"] == before["id"]
    assert (await get_task(proc.url, task["id"]))["pending_questions"] == [after]
    assert (await answer(proc.url, task["id"], after["id"], "no")).status_code == 200
    done = await wait_for_task(proc.url, task["id"], until=lambda t: t["is_terminal"], within=30)
    assert (done["state"], done["result"]) == ("completed", {"answer": "no"})


async def test_an_answer_given_while_no_worker_runs_the_task_is_used_on_restoration(
    database_url: str, tmp_path: Path
) -> None:
    worker = ServerProcess(database_url, tmp_path)
    # Another instance on the same database that runs no jobs: it only answers.
    front = ServerProcess(database_url, tmp_path, TASKSTATE_RUN_SUPERVISOR=0)
    try:
        await worker.start()
        task = await create_task(
            worker.url, "demo.ask", params={"question": "Merge?", "choices": ["yes", "no"]}
        )
        question = await pending_question(worker.url, task["id"])
        await worker.kill()
        await front.start()
        assert (await answer(front.url, task["id"], question["id"], "yes")).status_code == 200
        stored = await get_task(front.url, task["id"])
        assert stored["pending_questions"] == [] and stored["state"] == "running"
        await worker.start()
        done = await wait_for_task(worker.url, task["id"], until=lambda t: t["is_terminal"], within=30)
    finally:
        worker.stop_quietly()
        front.stop_quietly()
    assert (done["state"], done["result"]) == ("completed", {"answer": "yes"})
    assert done["restoration_count"] == 1
