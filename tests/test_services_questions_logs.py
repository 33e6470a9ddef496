"""Service jobs, questions to the user, task logs and the run report (in-process server)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from taskstate.core.db import utcnow
from tests.jobs import GATES
from tests.support.databases import sqlite_write_lock
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.waits import wait_released


def path(rows: list[dict[str, Any]]) -> list[str]:
    return [r["to_state"] for r in rows]


# -- service jobs ------------------------------------------------------------------------


async def test_serve_then_stop_completes(server: LiveServer) -> None:
    task = await server.create("demo.serve")
    serving = await server.wait_for(task["id"], "serving")
    assert serving["endpoint"] == "demo://serve"
    assert serving["service_info"]["kind"] == "demo"
    response = await server.client.post(f"/api/v2/tasks/{task['id']}/stop")
    assert response.status_code == 200, response.text
    assert response.json()["state"] in ("stopping", "completed")
    done = await server.wait_for(task["id"])
    assert done["state"] == "completed"
    assert done["result"]["served_seconds"] >= 0
    assert path(await server.transitions(task["id"])) == [
        "queued",
        "preparing",
        "running",
        "serving",
        "stopping",
        "completed",
    ]
    again = await server.client.post(f"/api/v2/tasks/{task['id']}/stop")
    assert again.status_code == 409
    assert again.json()["error"] == "invalid_transition"


async def test_stop_is_refused_unless_serving(server: LiveServer) -> None:
    later = await server.create("demo.noop", run_at=(utcnow() + timedelta(days=1)).isoformat())
    running = await server.create("test.gate", params={"gate": "stop-refused"})
    done = await server.create("demo.noop")
    await server.wait_for(running["id"], "running")
    await server.wait_for(done["id"], "completed")
    for task, state in ((later, "queued"), (running, "running"), (done, "completed")):
        response = await server.client.post(f"/api/v2/tasks/{task['id']}/stop")
        assert response.status_code == 409, response.text
        body = response.json()
        assert (body["error"], body["from"], body["to"]) == ("invalid_transition", state, "stopping")
    missing = await server.client.post("/api/v2/tasks/00000000-0000-4000-8000-000000000000/stop")
    assert missing.status_code == 404

    GATES["stop-refused"].set()


async def test_a_service_that_ignores_stop_is_failed_after_the_grace(database_url: str) -> None:
    async with live_server(make_settings(database_url, stop_grace_seconds=0.3)) as server:
        task = await server.create("test.stubborn_service")
        await server.wait_for(task["id"], "serving")
        await server.client.post(f"/api/v2/tasks/{task['id']}/stop")
        done = await server.wait_for(task["id"])
        assert (done["state"], done["reason"]) == ("failed", "stop_timeout")
        assert path(await server.transitions(task["id"]))[-2:] == ["stopping", "failed"]
        await wait_released(server.services.supervisor, [task["id"]], within=0.1)
        assert server.services.supervisor.running == {}


async def stop_gated_service(server: LiveServer, gate: str) -> str:
    """A `test.gated_shutdown` service, serving, then asked to stop: it shuts down (returns)
    when the test opens `gate`."""
    task = await server.create("test.gated_shutdown", params={"gate": gate})
    await server.wait_for(task["id"], "serving")
    assert (await server.client.post(f"/api/v2/tasks/{task['id']}/stop")).status_code == 200
    return str(task["id"])


async def test_a_shutdown_in_time_completes_however_long_its_last_write_waits(tmp_path: Path) -> None:
    """The grace bounds the job's code, not the write that records how it ended: a
    service that shut down in time, whose `completed` waits on a busy database past
    the grace, completes (a soak run on SQLite once failed it with `stop_timeout`)."""
    database = tmp_path / "taskstate.db"
    settings = make_settings(f"sqlite+aiosqlite:///{database}", stop_grace_seconds=0.3)
    async with live_server(settings) as server:
        task_id = await stop_gated_service(server, "shutdown-in-time")
        with sqlite_write_lock(database):  # every write of the server waits meanwhile
            GATES["shutdown-in-time"].set()  # the job returns well within the grace...
            await asyncio.sleep(1.0)  # ...and its last write waits three graces long
        done = await server.wait_for(task_id)
        assert (done["state"], done["reason"], done["result"]) == ("completed", "completed", "shut down")
        assert path(await server.transitions(task_id))[-2:] == ["stopping", "completed"]


async def test_a_service_that_shut_down_completes_though_its_instance_stops_meanwhile(tmp_path: Path) -> None:
    """A graceful stop of the instance while a stopped service's `completed` waits on a
    busy database: the write is the end of work already done, so it lands (a soak run on
    SQLite once failed such a service with `stop_timeout`, 'did not shut down within 10 s',
    a second after the stop)."""
    database = tmp_path / "taskstate.db"
    settings = make_settings(f"sqlite+aiosqlite:///{database}", shutdown_grace_seconds=0.2)
    async with live_server(settings) as server:
        task_id = await stop_gated_service(server, "shut-down-then-instance")
        with sqlite_write_lock(database):
            GATES["shut-down-then-instance"].set()
            await asyncio.sleep(0.1)  # the job has returned; its last write waits
            stopping = asyncio.create_task(server.services.supervisor.stop())
            await asyncio.sleep(0.6)  # three shutdown graces
        await asyncio.wait_for(stopping, 15)
        done = await server.get(task_id)
        assert (done["state"], done["reason"], done["result"]) == ("completed", "completed", "shut down")


async def test_an_instance_that_stops_while_its_service_stops_says_so(database_url: str) -> None:
    """The service was asked to stop and its instance shuts down before the service did:
    `stopping` has no way back to the queue, so the task fails, and its error says what
    happened rather than blaming the service for the stop grace it was not given."""
    async with live_server(make_settings(database_url, shutdown_grace_seconds=0.2)) as server:
        task_id = await stop_gated_service(server, "never-opened")
        await server.wait_for(task_id, "stopping")
        await asyncio.wait_for(server.services.supervisor.stop(), 15)
        done = await server.get(task_id)
        assert (done["state"], done["reason"], done["error_type"]) == ("failed", "server_restart", "Shutdown")
        assert done["error"] == "the instance shut down before the service finished stopping"
        assert path(await server.transitions(task_id))[-2:] == ["stopping", "failed"]


async def test_a_shutdown_that_raises_fails_the_task(server: LiveServer) -> None:
    task = await server.create("test.failing_shutdown")
    await server.wait_for(task["id"], "serving")
    await server.client.post(f"/api/v2/tasks/{task['id']}/stop")
    done = await server.wait_for(task["id"])
    assert (done["state"], done["error"], done["error_type"]) == (
        "failed",
        "shutdown went wrong",
        "RuntimeError",
    )


async def test_cancel_while_serving(server: LiveServer) -> None:
    task = await server.create("demo.serve")
    await server.wait_for(task["id"], "serving")
    response = await server.client.post(f"/api/v2/tasks/{task['id']}/cancel")
    assert response.json()["state"] == "cancelled"
    await wait_released(server.services.supervisor, [task["id"]], within=0.3)  # its job ended
    assert (await server.get(task["id"]))["state"] == "cancelled"
    assert server.services.supervisor.running == {}


# -- questions ----------------------------------------------------------------------------


async def test_ask_answer_complete(server: LiveServer) -> None:
    """Three jobs ask at once; each gets the answer given to its own question."""
    async with connect(server.ws_url) as ws:
        snapshot = json.loads(await ws.recv())
        assert snapshot["type"] == "snapshot"
        asks = {"Deploy?": "yes", "Roll back?": "no", "Notify?": "yes"}
        tasks = {}
        for text in asks:
            task = await server.create("demo.ask", params={"question": text, "choices": ["yes", "no"]})
            tasks[text] = task
        questions = {}
        for text, task in tasks.items():
            waiting = await server.wait_for(
                task["id"], until=lambda t: bool(t["pending_questions"]), timeout=10
            )
            assert waiting["state"] == "running"
            assert waiting["waiting_for_input"] is True
            [question] = waiting["pending_questions"]
            assert (question["question"], question["choices"]) == (text, ["yes", "no"])
            questions[text] = question

        inbox = (await server.client.get("/api/v2/questions")).json()["items"]
        assert sorted((q["id"], q["task_id"], q["task_name"]) for q in inbox) == sorted(
            (questions[text]["id"], tasks[text]["id"], "demo.ask") for text in asks
        )

        for text, answer in asks.items():
            url = f"/api/v2/tasks/{tasks[text]['id']}/questions/{questions[text]['id']}/answer"
            wrong = await server.client.post(url, json={"answer": "maybe"})
            assert wrong.status_code == 422
            assert wrong.json()["error"] == "validation_error"
            right = await server.client.post(url, json={"answer": answer})
            assert right.status_code == 200, right.text
            twice = await server.client.post(url, json={"answer": "no" if answer == "yes" else "yes"})
            assert (twice.status_code, twice.json()["error"]) == (409, "already_answered")

        for text, answer in asks.items():
            done = await server.wait_for(tasks[text]["id"])
            assert done["state"] == "completed"
            assert done["result"] == {"answer": answer}
            assert done["pending_questions"] == [] and done["waiting_for_input"] is False
        assert (await server.client.get("/api/v2/questions")).json()["items"] == []

        seen: list[dict[str, Any]] = []
        completed: set[str] = set()
        async with asyncio.timeout(10):
            while len(completed) < len(asks):
                seen.append(message := json.loads(await ws.recv()))
                if message["type"] == "transition" and message["to"] == "completed":
                    completed.add(message["task_id"])
    for text, answer in asks.items():
        task_id = tasks[text]["id"]
        mine = [m for m in seen if m["type"] == "question" and m["task_id"] == task_id]
        asked = [m for m in mine if m["question"].get("status") == "pending"]
        assert asked and asked[0]["question"]["question"] == text
        answered = [m for m in mine if m["question"].get("status") == "answered"]
        assert answered and answered[0]["question"]["answer"] == answer


async def test_answering_a_question_of_a_finished_task_is_409(server: LiveServer) -> None:
    task = await server.create("demo.ask")
    [question] = (
        await server.wait_for(task["id"], until=lambda t: bool(t["pending_questions"]), timeout=10)
    )["pending_questions"]
    await server.client.post(f"/api/v2/tasks/{task['id']}/cancel")
    response = await server.client.post(
        f"/api/v2/tasks/{task['id']}/questions/{question['id']}/answer", json={"answer": "yes"}
    )
    assert (response.status_code, response.json()["error"]) == (409, "task_finished")
    cancelled = await server.get(task["id"])
    assert cancelled["pending_questions"] == []
    assert (await server.client.get("/api/v2/questions")).json()["items"] == []
    unknown = await server.client.post(
        f"/api/v2/tasks/{task['id']}/questions/00000000-0000-4000-8000-000000000000/answer",
        json={"answer": "x"},
    )
    assert unknown.status_code == 404
    bad_body = await server.client.post(
        f"/api/v2/tasks/{task['id']}/questions/{question['id']}/answer", json={"reply": "x"}
    )
    assert bad_body.status_code == 422


async def test_a_question_times_out_to_its_default(server: LiveServer) -> None:
    task = await server.create("demo.ask", params={"timeout_seconds": 0.3, "default": "no"})
    done = await server.wait_for(task["id"])
    assert (done["state"], done["result"]) == ("completed", {"answer": "no"})


# -- logs ---------------------------------------------------------------------------------


async def test_logs_are_ordered_paged_and_streamed(server: LiveServer) -> None:
    """Four jobs log side by side: each task's lines, live and stored, are its own, in order."""
    async with connect(server.ws_url) as ws:
        await ws.recv()
        ids = [
            (await server.create("demo.sleep", params={"seconds": 0.2, "steps": 5}))["id"] for _ in range(4)
        ]
        for task_id in ids:
            await server.wait_for(task_id, "completed")
        logs: dict[str, list[dict[str, Any]]] = {task_id: [] for task_id in ids}
        async with asyncio.timeout(10):
            while any(len(lines) < 5 for lines in logs.values()):
                message = json.loads(await ws.recv())
                if message["type"] == "log":
                    logs[message["task_id"]].append(message)
    for task_id in ids:
        assert [m["seq"] for m in logs[task_id]] == [1, 2, 3, 4, 5]
        assert logs[task_id][0]["message"] == "step 1 of 5"
        all_lines = (await server.client.get(f"/api/v2/tasks/{task_id}/logs")).json()
        assert [x["seq"] for x in all_lines["items"]] == [1, 2, 3, 4, 5]
        assert all_lines["next_after"] == 5
        later = (await server.client.get(f"/api/v2/tasks/{task_id}/logs?after=3")).json()["items"]
        assert [x["message"] for x in later] == ["step 4 of 5", "step 5 of 5"]
        assert (await server.get(task_id))["log_lines"] == 5
    bad = await server.client.get(f"/api/v2/tasks/{ids[0]}/logs?after=-1")
    assert bad.status_code == 422
    missing = await server.client.get("/api/v2/tasks/00000000-0000-4000-8000-000000000000/logs")
    assert missing.status_code == 404


async def test_logs_are_bounded_with_a_marker_and_take_logging_records(database_url: str) -> None:
    async with live_server(make_settings(database_url, max_log_lines=10)) as server:
        task = await server.create("test.logger", params={"updates": 25})
        await server.wait_for(task["id"], "completed")
        lines = (await server.client.get(f"/api/v2/tasks/{task['id']}/logs")).json()["items"]
    # 25 lines from ctx.log, then two through logging: 27 in all, the last 10 kept.
    assert [x["seq"] for x in lines] == list(range(17, 28))
    marker = lines[0]
    assert marker["level"] == "warning" and "17 earlier lines dropped" in marker["message"]
    assert lines[-2]["message"] == "from logging: a warning" and lines[-2]["level"] == "warning"
    assert lines[-1]["level"] == "error" and "ValueError: boom" in lines[-1]["message"]
    assert lines[1]["message"] == "line 18"


# -- the run report -----------------------------------------------------------------------


async def test_a_completed_task_carries_its_run_report(server: LiveServer) -> None:
    task = await server.create("demo.sleep", params={"seconds": 0.2, "steps": 2})
    done = await server.wait_for(task["id"], "completed")
    summary = done["execution_summary"]
    assert summary["attempts"] == 1 and summary["items_processed"] == 2 and summary["log_lines"] == 2
    assert 0.2 <= summary["duration_seconds"] < 10
    phases = done["phase_results"]
    assert set(phases) == {"queued", "preparing", "running", "collecting"}
    assert phases["running"] >= 0.19
    info = done["system_info"]
    assert info["pid"] > 0 and info["taskstate_version"] and info["python_version"].startswith("3.")


@pytest.mark.parametrize("job", ["demo.fail"])
async def test_a_failed_task_carries_its_run_report(server: LiveServer, job: str) -> None:
    task = await server.create(job, params={"message": "nope"})
    done = await server.wait_for(task["id"])
    assert done["state"] == "failed"
    assert done["execution_summary"]["attempts"] == 1
    assert "running" in done["phase_results"]
