"""The HTTP API of CONTRACT §2, row by row, against a real server on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from taskstate.core.db import transitions as transitions_table
from taskstate.core.nesting import MAX_JSON_DEPTH
from taskstate.core.states import State
from tests.jobs import GATES, nested_list
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.waits import wait_released, wait_until

#: Tasks created with this `run_at` stay `queued` for the whole test (no worker claims them).
FAR_FUTURE = "2999-01-01T00:00:00Z"

CONTRACT_TASK_FIELDS = {
    "id",
    "type",
    "name",
    "state",
    "progress",
    "phase",
    "message",
    "items_processed",
    "items_failed",
    "params",
    "result",
    "error",
    "priority",
    "attempt",
    "max_attempts",
    "trigger",
    "trigger_source",
    "created_at",
    "started_at",
    "finished_at",
    "duration_seconds",
    "worker_id",
    "heartbeat_at",
    "restoration_count",
    "last_restored_at",
    "restoration_source",
    "pending_questions",
    "waiting_for_input",
    "retry_of",
    "is_terminal",
}
TERMINAL = {"completed", "failed", "cancelled"}


#: For tests that touch only the tasks they create: conftest's `shared_server`, one real
#: server per backend for the whole module, in the module's event loop.
shared_loop = pytest.mark.asyncio(loop_scope="module")


# -- helpers ---------------------------------------------------------------------------------


def error_body(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error shape with this status and code."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("error") == code, body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


async def job_of(server: LiveServer, task_id: str) -> asyncio.Task[None]:
    """The supervisor's asyncio task running this task's job (it must be running)."""
    running = server.services.supervisor.running
    await wait_until(lambda: task_id in running, f"a job for {task_id}")
    job_task = running[task_id].task
    assert job_task is not None
    return job_task


async def assert_job_stops(
    server: LiveServer, task_id: str, job_task: asyncio.Task[None], within: float
) -> None:
    done, _ = await asyncio.wait({job_task}, timeout=within)
    assert job_task in done, f"the job of {task_id} still runs {within}s after it was stopped"
    await wait_released(server.services.supervisor, [task_id], within=1)


async def list_tasks(server: LiveServer, params: Any = None) -> dict[str, Any]:
    response = await server.client.get("/api/v2/tasks", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [t["id"] for t in items]


# -- create ----------------------------------------------------------------------------------


@shared_loop
async def test_create_answers_201_with_every_contract_field(shared_server: LiveServer) -> None:
    server = shared_server
    response = await server.client.post(
        "/api/v2/tasks", json={"type": "demo.sleep", "params": {}, "run_at": FAR_FUTURE}
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert CONTRACT_TASK_FIELDS <= set(task), CONTRACT_TASK_FIELDS - set(task)
    assert str(uuid.UUID(task["id"])) == task["id"]
    assert task["type"] == "demo.sleep"
    assert task["name"] == "demo.sleep", "name defaults to the type"
    assert task["params"] == {"seconds": 5, "steps": 10}, "the type's param defaults are filled in"
    assert task["state"] == "queued"
    assert task["is_terminal"] is False
    assert task["progress"] == 0
    assert (task["priority"], task["attempt"], task["max_attempts"]) == (0, 1, 3)
    assert task["trigger"] == "api"
    assert task["pending_questions"] == [] and task["waiting_for_input"] is False
    assert task["retry_of"] is None
    assert task["result"] is None and task["error"] is None
    assert task["started_at"] is None and task["finished_at"] is None
    assert datetime.fromisoformat(task["created_at"]).tzinfo is not None
    assert await server.get(task["id"]) == {**task, "traceback": None}, "GET adds the traceback"


@shared_loop
async def test_create_keeps_the_given_fields(shared_server: LiveServer) -> None:
    server = shared_server
    body = {
        "type": "demo.count",
        "params": {"to": 3},
        "name": "nightly count",
        "priority": 7,
        "run_at": FAR_FUTURE,
        "timeout_seconds": 12.5,
        "max_attempts": 5,
        "trigger": "scheduled",
        "trigger_source": "cron:nightly",
    }
    task = await server.create(**body)
    assert task["name"] == "nightly count"
    assert task["params"] == {"to": 3, "delay": 0.5}
    assert task["priority"] == 7
    assert task["max_attempts"] == 5
    assert task["trigger"] == "scheduled"
    assert task["trigger_source"] == "cron:nightly"
    assert datetime.fromisoformat(task["run_at"]) == datetime(2999, 1, 1, tzinfo=UTC)
    fetched = await server.get(task["id"])
    given = {k: v for k, v in body.items() if k != "run_at"}
    assert {k: fetched[k] for k in given} == {**given, "params": {"to": 3, "delay": 0.5}}


async def test_idempotency_key_answers_the_first_task_with_200(server: LiveServer) -> None:
    body = {"type": "demo.noop", "idempotency_key": "order-42", "run_at": FAR_FUTURE}
    first = await server.client.post("/api/v2/tasks", json=body)
    assert first.status_code == 201, first.text
    again = await server.client.post("/api/v2/tasks", json={**body, "name": "another name"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["name"] == "demo.noop", "the first task is answered, not the second body"

    # Concurrent requests with one key: exactly one is created.
    racing = {"type": "demo.noop", "idempotency_key": "race", "run_at": FAR_FUTURE}
    answers = await asyncio.gather(*(server.client.post("/api/v2/tasks", json=racing) for _ in range(8)))
    assert sorted(r.status_code for r in answers) == [200] * 7 + [201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1

    page = await list_tasks(server)
    assert page["total"] == 2
    assert sorted(t["idempotency_key"] for t in page["items"]) == ["order-42", "race"]


# -- batch -----------------------------------------------------------------------------------


async def test_batch_creates_every_task_in_order(server: LiveServer) -> None:
    bodies = [{"type": "demo.noop", "name": f"item {i}", "run_at": FAR_FUTURE} for i in range(7)]
    bodies[3] = {"type": "demo.sleep", "name": "item 3", "params": {"steps": 2}, "run_at": FAR_FUTURE}
    response = await server.client.post("/api/v2/tasks/batch", json={"tasks": bodies})
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [t["name"] for t in items] == [f"item {i}" for i in range(7)]
    assert items[3]["type"] == "demo.sleep" and items[3]["params"] == {"seconds": 5, "steps": 2}
    assert all(t["state"] == "queued" for t in items)
    assert len(set(ids(items))) == 7
    page = await list_tasks(server)
    assert page["total"] == 7
    assert set(ids(page["items"])) == set(ids(items))


async def test_batch_with_one_invalid_body_fails_whole_and_names_its_index(server: LiveServer) -> None:
    good = {"type": "demo.noop", "run_at": FAR_FUTURE}

    unknown = await server.client.post(
        "/api/v2/tasks/batch", json={"tasks": [good, good, {"type": "no.such.type"}, good]}
    )
    body = error_body(unknown, 422, "unknown_task_type")
    assert body.get("index") == 2, body
    assert "2" in body["detail"]

    bad_params = await server.client.post(
        "/api/v2/tasks/batch",
        json={"tasks": [good, {"type": "demo.sleep", "params": {"seconds": -1}}, good]},
    )
    body = error_body(bad_params, 422, "validation_error")
    assert body.get("index") == 1, body

    bad_field = await server.client.post(
        "/api/v2/tasks/batch", json={"tasks": [good, good, good, {"type": "demo.noop", "priority": "high"}]}
    )
    body = error_body(bad_field, 422, "validation_error")
    assert body.get("index") == 3 or any(e["loc"][:3] == ["body", "tasks", 3] for e in body["errors"]), body
    assert "3" in body["detail"]

    assert (await list_tasks(server))["total"] == 0, "a failed batch creates nothing"


# -- get, history ----------------------------------------------------------------------------


@shared_loop
async def test_get_answers_the_task_as_it_moves(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("demo.noop")
    done = await server.wait_for(task["id"])
    assert done["id"] == task["id"]
    assert done["state"] == "completed" and done["is_terminal"] is True
    assert done["progress"] == 100
    assert done["started_at"] is not None and done["finished_at"] is not None
    assert done["duration_seconds"] is not None and done["duration_seconds"] >= 0
    assert done["worker_id"] == server.services.supervisor.worker_id
    assert await server.get(task["id"]) == done


async def test_history_is_newest_first_with_limit_and_total(server: LiveServer) -> None:
    created = [await server.create("demo.noop", name=f"t{i}", run_at=FAR_FUTURE) for i in range(6)]
    page = await list_tasks(server)
    assert ids(page["items"]) == ids(created)[::-1]
    assert (page["total"], page["total_is_estimate"]) == (6, False)
    assert page["next_cursor"] is None
    stamps = [datetime.fromisoformat(t["created_at"]) for t in page["items"]]
    assert stamps == sorted(stamps, reverse=True)

    first = await list_tasks(server, {"limit": 4})
    assert ids(first["items"]) == ids(created)[::-1][:4]
    assert first["total"] == 6, "total counts every match, not the page"
    assert first["next_cursor"]
    second = await list_tasks(server, {"limit": 4, "cursor": first["next_cursor"]})
    assert ids(second["items"]) == ids(created)[::-1][4:]
    assert second["next_cursor"] is None
    assert second["total"] == 6


async def test_history_filters(server: LiveServer) -> None:
    done = await server.create("demo.noop", trigger="manual")
    failed = await server.create("demo.fail", params={"message": "boom"}, trigger="scheduled")
    await server.wait_for(done["id"])
    await server.wait_for(failed["id"])
    queued = await server.create("demo.sleep", run_at=FAR_FUTURE)
    late = await server.create("demo.noop", run_at=FAR_FUTURE, trigger="manual")

    async def matching(params: Any) -> set[str]:
        page = await list_tasks(server, params)
        assert page["total"] == len(page["items"]), page
        return set(ids(page["items"]))

    assert await matching([("state", "completed"), ("state", "failed")]) == {done["id"], failed["id"]}
    assert await matching({"state": "queued"}) == {queued["id"], late["id"]}
    assert await matching({"type": "demo.noop"}) == {done["id"], late["id"]}
    assert await matching({"type": "demo.noop", "state": "queued"}) == {late["id"]}
    assert await matching({"trigger": "manual"}) == {done["id"], late["id"]}
    assert await matching({"trigger": "scheduled"}) == {failed["id"]}
    assert await matching({"trigger": "api"}) == {queued["id"]}
    assert await matching({"type": "no.such.type"}) == set()

    pivot = datetime.fromisoformat(queued["created_at"])
    after = await matching({"created_after": pivot.isoformat()})
    assert late["id"] in after and done["id"] not in after and failed["id"] not in after
    before = await matching({"created_before": pivot.isoformat()})
    assert before == {done["id"], failed["id"]}
    # The same instant written in another zone selects the same tasks.
    elsewhere = pivot.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert await matching({"created_before": elsewhere}) == before
    window = await matching(
        {
            "created_after": datetime.fromisoformat(failed["created_at"]).isoformat(),
            "created_before": datetime.fromisoformat(late["created_at"]).isoformat(),
        }
    )
    assert queued["id"] in window and done["id"] not in window and late["id"] not in window


async def test_history_name_search_matches_percent_and_underscore_literally(server: LiveServer) -> None:
    names = ["100% done", "1000 done", "a_b", "axb", "path/to", "pathxto", "plain"]
    created = {n: await server.create("demo.noop", name=n, run_at=FAR_FUTURE) for n in names}

    async def found(q: str) -> set[str]:
        page = await list_tasks(server, {"q": q})
        assert page["total"] == len(page["items"])
        return {t["name"] for t in page["items"]}

    assert await found("0%") == {"100% done"}
    assert await found("%") == {"100% done"}
    assert await found("a_b") == {"a_b"}
    assert await found("_") == {"a_b"}
    assert await found("h/t") == {"path/to"}
    assert await found("done") == {"100% done", "1000 done"}
    assert await found("lai") == {"plain"}
    assert await found("nothing like it") == set()
    assert len(created) == len(names)


async def test_history_cursor_walks_every_task_exactly_once(server: LiveServer) -> None:
    batch = await server.client.post(
        "/api/v2/tasks/batch",
        json={"tasks": [{"type": "demo.noop", "name": f"b{i}", "run_at": FAR_FUTURE} for i in range(23)]},
    )
    assert batch.status_code == 201, batch.text
    singles = [await server.create("demo.sleep", name=f"s{i}", run_at=FAR_FUTURE) for i in range(4)]
    expected = set(ids(batch.json()["items"])) | set(ids(singles))

    seen: list[str] = []
    stamps: list[datetime] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = await list_tasks(server, params)
        pages += 1
        assert page["total"] == 27 + (3 if pages > 1 else 0)
        assert len(page["items"]) <= 5
        seen += ids(page["items"])
        stamps += [datetime.fromisoformat(t["created_at"]) for t in page["items"]]
        if pages == 1:
            # Tasks created mid-walk are newer than the cursor: they must not shift the pages.
            for i in range(3):
                await server.create("demo.noop", name=f"late{i}", run_at=FAR_FUTURE)
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 20, "the cursor never ends"
    assert len(seen) == len(set(seen)), "a task was listed twice"
    assert set(seen) == expected
    assert pages == 6
    assert stamps == sorted(stamps, reverse=True)

    # With a filter, the walk covers exactly the matching tasks.
    filtered: list[str] = []
    cursor = None
    while True:
        page = await list_tasks(
            server, {"type": "demo.sleep", "limit": 3, **({"cursor": cursor} if cursor else {})}
        )
        assert page["total"] == 4
        filtered += ids(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(filtered) == sorted(ids(singles))
    assert len(filtered) == 4


async def test_active_lists_only_non_terminal_tasks(server: LiveServer) -> None:
    done = await server.create("demo.noop")
    failed = await server.create("demo.fail")
    cancelled = await server.create("demo.noop", run_at=FAR_FUTURE)
    await server.wait_for(done["id"])
    await server.wait_for(failed["id"])
    assert (await server.client.post(f"/api/v2/tasks/{cancelled['id']}/cancel")).status_code == 200
    queued = await server.create("demo.noop", run_at=FAR_FUTURE)
    running = await server.create("test.gate", params={"gate": "active"})
    try:
        await server.wait_for(running["id"], "running")
        response = await server.client.get("/api/v2/tasks/active")
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert set(ids(items)) == {queued["id"], running["id"]}
        assert all(not t["is_terminal"] and t["state"] not in TERMINAL for t in items)
        assert {t["id"]: t["state"] for t in items} == {queued["id"]: "queued", running["id"]: "running"}
    finally:
        GATES["active"].set()
    await server.wait_for(running["id"], "completed")
    response = await server.client.get("/api/v2/tasks/active")
    assert ids(response.json()["items"]) == [queued["id"]]


# -- transitions -----------------------------------------------------------------------------


@shared_loop
async def test_noop_has_exactly_five_transitions(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("demo.noop")
    assert (await server.wait_for(task["id"]))["state"] == "completed"
    rows = await server.transitions(task["id"])
    assert [(r["from_state"], r["to_state"]) for r in rows] == [
        (None, "queued"),
        ("queued", "preparing"),
        ("preparing", "running"),
        ("running", "collecting"),
        ("collecting", "completed"),
    ]
    seqs = [r["seq"] for r in rows]
    assert all(isinstance(s, int) for s in seqs)
    assert all(a < b for a, b in pairwise(seqs)), seqs
    assert rows[0]["actor"] == "api"
    worker = f"worker:{server.services.supervisor.worker_id}"
    assert [r["actor"] for r in rows[1:]] == [worker] * 4
    assert all(r["task_id"] == task["id"] for r in rows)
    stamps = [datetime.fromisoformat(r["at"]) for r in rows]
    assert stamps == sorted(stamps)


# -- cancel ----------------------------------------------------------------------------------


@shared_loop
async def test_cancel_a_running_task_stops_its_job(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("test.gate", params={"gate": "cancel-me"})
    await server.wait_for(task["id"], "running")
    job_task = await job_of(server, task["id"])

    response = await server.client.post(f"/api/v2/tasks/{task['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["id"] == task["id"]
    assert cancelled["state"] == "cancelled" and cancelled["is_terminal"] is True
    assert cancelled["finished_at"] is not None

    await assert_job_stops(
        server, task["id"], job_task, within=server.services.settings.cancel_grace_seconds + 2
    )
    GATES["cancel-me"].set()  # too late: the job has stopped, nothing may move the task again

    final = await server.get(task["id"])
    assert final["state"] == "cancelled"
    assert final["result"] is None
    rows = await server.transitions(task["id"])
    assert rows[-1]["to_state"] == "cancelled"
    assert rows[-1]["actor"] == "api"
    assert [r["to_state"] for r in rows].count("cancelled") == 1
    assert [r["to_state"] for r in rows] == ["queued", "preparing", "running", "cancelled"]

    again = await server.client.post(f"/api/v2/tasks/{task['id']}/cancel")
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "cancelled"
    assert len(await server.transitions(task["id"])) == len(rows), "a repeated cancel writes no row"


@shared_loop
async def test_cancel_a_queued_task(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("demo.noop", run_at=FAR_FUTURE)
    response = await server.client.post(f"/api/v2/tasks/{task['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "cancelled"
    rows = await server.transitions(task["id"])
    assert [(r["from_state"], r["to_state"], r["actor"]) for r in rows] == [
        (None, "queued", "api"),
        ("queued", "cancelled", "api"),
    ]


@shared_loop
async def test_cancel_a_completed_task_is_an_invalid_transition(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("demo.noop")
    await server.wait_for(task["id"], "completed")
    before = await server.transitions(task["id"])
    body = error_body(
        await server.client.post(f"/api/v2/tasks/{task['id']}/cancel"), 409, "invalid_transition"
    )
    assert body["from"] == "completed"
    assert body["to"] == "cancelled"
    assert (await server.get(task["id"]))["state"] == "completed"
    assert await server.transitions(task["id"]) == before


# -- failures, timeouts, hard stops, results -------------------------------------------------


@shared_loop
async def test_demo_fail_ends_failed_with_its_message(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("demo.fail", params={"message": "the disk is on fire"})
    failed = await server.wait_for(task["id"])
    assert failed["state"] == "failed"
    assert failed["error"] == "the disk is on fire"
    assert failed["error_type"] == "DemoFailure"
    assert failed["finished_at"] is not None
    rows = await server.transitions(task["id"])
    assert [r["to_state"] for r in rows] == ["queued", "preparing", "running", "failed"]


@shared_loop
async def test_timeout_fails_the_task_with_reason_timeout(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("test.gate", params={"gate": "never"}, timeout_seconds=0.3)
    failed = await server.wait_for(task["id"], timeout=5)
    assert failed["state"] == "failed"
    assert failed["reason"] == "timeout"
    assert failed["error"] and "time" in failed["error"]
    rows = await server.transitions(task["id"])
    assert rows[-1]["to_state"] == "failed" and rows[-1]["reason"] == "timeout"
    await wait_released(server.services.supervisor, [task["id"]])


@shared_loop
async def test_stubborn_job_is_stopped_hard_within_the_grace_period(shared_server: LiveServer) -> None:
    server = shared_server
    task = await server.create("test.stubborn", params={"seconds": 30})
    await server.wait_for(task["id"], "running")
    job_task = await job_of(server, task["id"])
    grace = server.services.settings.cancel_grace_seconds

    response = await server.client.post(f"/api/v2/tasks/{task['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "cancelled"
    await assert_job_stops(server, task["id"], job_task, within=grace + 1.5)
    assert job_task.cancelled(), "the job ignores its cancellation event: only the hard stop ends it"

    final = await server.get(task["id"])
    assert final["state"] == "cancelled"
    rows = await server.transitions(task["id"])
    assert rows[-1]["to_state"] == "cancelled"
    assert [r["to_state"] for r in rows].count("cancelled") == 1


async def test_result_over_the_limit_fails_with_a_clear_error(database_url: str) -> None:
    async with live_server(make_settings(database_url, max_result_bytes=1000)) as server:
        small = await server.create("test.big_result", params={"size": 100})
        big = await server.create("test.big_result", params={"size": 5000})
        not_json = await server.create("test.not_json")

        ok = await server.wait_for(small["id"])
        assert ok["state"] == "completed"
        assert ok["result"] == "x" * 100

        failed = await server.wait_for(big["id"])
        assert failed["state"] == "failed"
        assert failed["result"] is None
        assert "1000" in failed["error"] and "limit" in failed["error"], failed["error"]
        assert failed["reason"] == "result_too_large"

        bad = await server.wait_for(not_json["id"])
        assert bad["state"] == "failed"
        assert "JSON" in bad["error"], bad["error"]


async def test_result_nested_too_deep_fails_the_task_clearly(server: LiveServer) -> None:
    """A result nested past MAX_JSON_DEPTH fails the task (it used to complete with a result
    that no reader could serialize, or fail with a bare RecursionError)."""
    ok = await server.create("test.deep_result", params={"depth": MAX_JSON_DEPTH})
    deep = [await server.create("test.deep_result", params={"depth": d}) for d in (65, 900, 100_000)]
    done = await server.wait_for(ok["id"])
    assert done["state"] == "completed"
    assert done["result"] == nested_list(MAX_JSON_DEPTH)
    for task in deep:
        failed = await server.wait_for(task["id"])
        assert (failed["state"], failed["reason"], failed["error_type"]) == (
            "failed",
            "invalid_result",
            "ResultTooDeep",
        ), failed
        assert failed["result"] is None
        assert f"limit of {MAX_JSON_DEPTH} levels" in failed["error"], failed["error"]


# -- retry -----------------------------------------------------------------------------------


@shared_loop
async def test_retry_of_a_failed_or_cancelled_task_creates_a_linked_task(shared_server: LiveServer) -> None:
    server = shared_server
    name = f"flaky {uuid.uuid4().hex}"
    original = await server.create("demo.fail", params={"message": "flaky"}, name=name, priority=3)
    await server.wait_for(original["id"], "failed")
    response = await server.client.post(f"/api/v2/tasks/{original['id']}/retry")
    assert response.status_code == 201, response.text
    retry = response.json()
    assert retry["id"] != original["id"]
    assert retry["retry_of"] == original["id"]
    assert (retry["type"], retry["params"], retry["name"]) == ("demo.fail", {"message": "flaky"}, name)
    assert retry["priority"] == 3
    assert retry["attempt"] == 1
    assert retry["state"] in ("queued", "preparing", "running", "failed")
    assert (await server.wait_for(retry["id"]))["error"] == "flaky"
    assert (await server.get(original["id"]))["state"] == "failed", "the original is left as it was"

    assert (await list_tasks(server, {"q": name}))["total"] == 2

    other = f"cancelled {uuid.uuid4().hex}"
    cancelled = await server.create("demo.noop", name=other, run_at=FAR_FUTURE)
    assert (await server.client.post(f"/api/v2/tasks/{cancelled['id']}/cancel")).status_code == 200
    response = await server.client.post(f"/api/v2/tasks/{cancelled['id']}/retry")
    assert response.status_code == 201, response.text
    assert response.json()["retry_of"] == cancelled["id"]
    assert response.json()["type"] == "demo.noop"
    assert (await list_tasks(server, {"q": other}))["total"] == 2
    await server.wait_for(response.json()["id"])


@shared_loop
async def test_retry_of_a_completed_or_running_task_is_409(shared_server: LiveServer) -> None:
    server = shared_server
    name = f"no retry {uuid.uuid4().hex}"
    done = await server.create("demo.noop", name=name)
    await server.wait_for(done["id"], "completed")
    body = error_body(
        await server.client.post(f"/api/v2/tasks/{done['id']}/retry"), 409, "invalid_transition"
    )
    assert body["from"] == "completed"

    running = await server.create("test.gate", params={"gate": "retry"}, name=name)
    try:
        await server.wait_for(running["id"], "running")
        body = error_body(
            await server.client.post(f"/api/v2/tasks/{running['id']}/retry"), 409, "invalid_transition"
        )
        assert body["from"] == "running"
    finally:
        GATES["retry"].set()
    await server.wait_for(running["id"], "completed")
    assert (await list_tasks(server, {"q": name}))["total"] == 2, "a refused retry creates nothing"


# -- cleanup, reset --------------------------------------------------------------------------


async def test_cleanup_deletes_terminal_tasks_and_their_transitions(server: LiveServer) -> None:
    done = await server.create("demo.noop")
    failed = await server.create("demo.fail")
    cancelled = await server.create("demo.noop", run_at=FAR_FUTURE)
    await server.wait_for(done["id"])
    await server.wait_for(failed["id"])
    assert (await server.client.post(f"/api/v2/tasks/{cancelled['id']}/cancel")).status_code == 200
    queued = await server.create("demo.noop", run_at=FAR_FUTURE)
    running = await server.create("test.gate", params={"gate": "cleanup"})
    try:
        await server.wait_for(running["id"], "running")
        terminal = [done["id"], failed["id"], cancelled["id"]]

        # Nothing finished more than a day ago, nor before the default retention.
        for body in ({"older_than_days": 1}, None):
            response = await server.client.post("/api/v2/tasks/cleanup", json=body)
            assert response.status_code == 200, response.text
            assert response.json() == {"deleted": 0}

        response = await server.client.post("/api/v2/tasks/cleanup", json={"older_than_days": 0})
        assert response.status_code == 200, response.text
        assert response.json() == {"deleted": 3}

        for task_id in terminal:
            error_body(await server.client.get(f"/api/v2/tasks/{task_id}"), 404, "not_found")
        async with server.services.store.db.reader.connect() as conn:
            left = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(transitions_table)
                    .where(transitions_table.c.task_id.in_(terminal))
                )
            ).scalar_one()
        assert left == 0, "the deleted tasks' transition rows are deleted too"

        assert (await server.get(queued["id"]))["state"] == "queued"
        assert (await server.get(running["id"]))["state"] == "running"
        assert len(await server.transitions(queued["id"])) == 1
        assert len(await server.transitions(running["id"])) == 3
        assert set(ids((await list_tasks(server))["items"])) == {queued["id"], running["id"]}

        response = await server.client.post("/api/v2/tasks/cleanup", json={"older_than_days": 0})
        assert response.json() == {"deleted": 0}
    finally:
        GATES["cleanup"].set()
    await server.wait_for(running["id"], "completed")


async def test_admin_reset_cancels_every_active_task_and_stops_jobs(server: LiveServer) -> None:
    done = await server.create("demo.noop")
    await server.wait_for(done["id"], "completed")
    queued = await server.create("demo.noop", run_at=FAR_FUTURE)
    gated = [await server.create("test.gate", params={"gate": f"reset-{i}"}) for i in range(2)]
    stubborn = await server.create("test.stubborn", params={"seconds": 30})
    held = [*gated, stubborn]
    jobs = []
    for task in held:
        await server.wait_for(task["id"], "running")
        jobs.append(await job_of(server, task["id"]))

    response = await server.client.post("/api/v2/admin/reset")
    assert response.status_code == 200, response.text
    assert response.json() == {"reset": 4}

    grace = server.services.settings.cancel_grace_seconds
    for task, job_task in zip(held, jobs, strict=True):
        await assert_job_stops(server, task["id"], job_task, within=grace + 1.5)
    assert server.services.supervisor.running == {}

    for task in [queued, *held]:
        after = await server.get(task["id"])
        assert after["state"] == "cancelled", after
        assert after["reason"] == "reset", after
        last = (await server.transitions(task["id"]))[-1]
        assert (last["to_state"], last["reason"], last["actor"]) == ("cancelled", "reset", "admin")
    assert (await server.get(done["id"]))["state"] == "completed"
    assert (await server.client.get("/api/v2/tasks/active")).json()["items"] == []

    again = await server.client.post("/api/v2/admin/reset")
    assert again.status_code == 200 and again.json() == {"reset": 0}


# -- task types, health, OpenAPI -------------------------------------------------------------


@shared_loop
async def test_the_server_publishes_the_transition_table_and_its_rules(shared_server: LiveServer) -> None:
    """`GET /api/v2/states` is the table of CONTRACT §1 as the server applies it, with the
    states in which cancel, stop and retry are allowed and where a reset leaves each state."""
    answer = await shared_server.client.get("/api/v2/states")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [s["name"] for s in body["states"]] == [s.value for s in State]
    assert {s["name"] for s in body["states"] if s["terminal"]} == {"completed", "failed", "cancelled"}
    assert body["transitions"] == {
        "queued": ["cancelled", "failed", "preparing"],
        "preparing": ["cancelled", "failed", "orphaned", "running"],
        "running": ["cancelled", "collecting", "failed", "orphaned", "serving"],
        "collecting": ["cancelled", "completed", "failed", "orphaned"],
        "completed": [],
        "failed": [],
        "cancelled": [],
        "orphaned": ["failed", "queued"],
        "serving": ["cancelled", "failed", "orphaned", "stopping"],
        "stopping": ["completed", "failed"],
    }
    assert body["calls"] == {
        "cancel": ["cancelled", "collecting", "preparing", "queued", "running", "serving"],
        "stop": ["serving", "stopping"],
        "retry": ["cancelled", "failed"],
    }
    assert body["reset"] == {
        "queued": "cancelled",
        "preparing": "cancelled",
        "running": "cancelled",
        "collecting": "cancelled",
        "serving": "cancelled",
        "orphaned": "failed",
        "stopping": "failed",
    }


@shared_loop
async def test_task_types_lists_the_demo_jobs_with_their_schemas(shared_server: LiveServer) -> None:
    server = shared_server
    response = await server.client.get("/api/v2/task-types")
    assert response.status_code == 200, response.text
    types = {t["name"]: t for t in response.json()["items"]}
    assert {"demo.noop", "demo.sleep", "demo.fail", "demo.count"} <= set(types)
    for spec in types.values():
        assert spec["kind"] in ("batch", "service")
        assert isinstance(spec["description"], str)
        assert isinstance(spec["params_schema"], dict) and spec["params_schema"].get("type") == "object"
    for name in ("demo.noop", "demo.sleep", "demo.fail", "demo.count"):
        assert types[name]["kind"] == "batch"
        assert types[name]["description"], name
    sleep = types["demo.sleep"]["params_schema"]["properties"]
    assert sleep["seconds"]["default"] == 5 and sleep["steps"]["default"] == 10
    assert "message" in types["demo.fail"]["params_schema"]["properties"]
    count = types["demo.count"]["params_schema"]["properties"]
    assert count["to"]["default"] == 20 and count["delay"]["default"] == 0.5
    assert types["demo.noop"]["params_schema"].get("properties", {}) == {}


@shared_loop
async def test_health_and_readiness(shared_server: LiveServer) -> None:
    server = shared_server
    response = await server.client.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"

    response = await server.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    for check in ("database", "migrations", "supervisor"):
        assert body["checks"].get(check) == "ok", body


async def _operations(server: LiveServer) -> list[tuple[str, str, dict[str, Any]]]:
    response = await server.client.get("/openapi.json")
    assert response.status_code == 200, response.text
    paths = response.json()["paths"]
    operations = [
        (method.upper(), path, op)
        for path, item in paths.items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) >= 14
    return operations


@shared_loop
async def test_openapi_every_operation_has_a_unique_operation_id(shared_server: LiveServer) -> None:
    server = shared_server
    operations = await _operations(server)
    missing = [f"{m} {p}" for m, p, op in operations if not op.get("operationId")]
    assert missing == []
    op_ids = [op["operationId"] for _, _, op in operations]
    assert len(op_ids) == len(set(op_ids)), op_ids


@shared_loop
async def test_openapi_every_operation_documents_its_errors(shared_server: LiveServer) -> None:
    server = shared_server
    problems = []
    for method, path, op in await _operations(server):
        statuses = set(op.get("responses", {}))
        errors = {s for s in statuses if s == "default" or s[0] in "45"}
        if not errors:
            problems.append(f"{method} {path} ({op.get('operationId')}): no error response")
        if "{task_id}" in path and "404" not in statuses:
            problems.append(f"{method} {path}: no 404")
        queries = [p for p in op.get("parameters", []) if p.get("in") == "query"]
        if (queries or "requestBody" in op) and "422" not in statuses:
            problems.append(f"{method} {path}: takes input but documents no 422")
    assert problems == [], "\n".join(problems)


@shared_loop
async def test_openapi_error_responses_have_the_error_shape(shared_server: LiveServer) -> None:
    server = shared_server
    problems = []
    for method, path, op in await _operations(server):
        for status, response in op.get("responses", {}).items():
            if not (status == "default" or status[0] in "45") or (path, status) == ("/readyz", "503"):
                continue
            content = response.get("content", {})
            # FastAPI files extra responses under the route's media type (text/plain for /metrics).
            media = content.get("application/json") or next(iter(content.values()), {})
            schema = media.get("schema", {})
            if schema.get("$ref") != "#/components/schemas/ErrorBody":
                problems.append(f"{method} {path} {status}: documented as {schema}, answered as ErrorBody")
    assert problems == [], "\n".join(problems)
