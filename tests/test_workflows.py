"""Workflows (CONTRACT §6) on a live server, on both engines: trees of children and their
cascading cancel, dependencies in a batch and their failures, approval gates, the slots of
waiting parents, tree filters, schedules' API, and random graphs (hypothesis)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from taskstate.web import auth
from tests.support.servers import LiveServer, live_server, make_settings

pytestmark = pytest.mark.timeout(120)

NOBODY = "00000000-0000-4000-8000-000000000000"


async def batch(server: LiveServer, *tasks: dict[str, Any], status: int = 201) -> Any:
    answer = await server.client.post("/api/v2/tasks/batch", json={"tasks": list(tasks)})
    assert answer.status_code == status, answer.text
    return answer.json()


async def tree_of(server: LiveServer, root_id: str) -> list[dict[str, Any]]:
    page = await server.client.get("/api/v2/tasks", params={"root_id": root_id, "limit": 500})
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


async def eventually(check: Any, within: float = 20, what: str = "") -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def few_slots(database_url: str) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(database_url, max_concurrent_tasks=3)) as server:
        yield server


async def test_cancelling_a_tree_cancels_every_descendant_first_each_with_its_row(
    few_slots: LiveServer,
) -> None:
    """A root, 3 children and 9 grandchildren on 3 slots: waiting parents give their slots
    up, so grandchildren run (3) and queue (6). Cancelling the root ends all 13, the
    descendants before the root, each with its own row, and every job stops."""
    server = few_slots
    root = await server.create("test.tree", params={"depth": 2, "width": 3, "gate": "never"})
    await eventually(
        lambda: _count(server, root["id"], lambda t: t["state"] == "running" and t["type"] == "test.tree"),
        what="the tree to grow",
    )
    tasks = await eventually(lambda: _full_tree(server, root["id"], 13), what="13 tasks")
    states = sorted(t["state"] for t in tasks if t["parent_id"] and t["params"]["depth"] == 0)
    assert "queued" in states and "running" in states, states  # running children, queued grandchildren
    answer = await server.client.post(f"/api/v2/tasks/{root['id']}/cancel")
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled", answer.text
    after = await tree_of(server, root["id"])
    assert len(after) == 13 and all(t["state"] == "cancelled" for t in after), [t["state"] for t in after]
    root_row = (await server.transitions(root["id"]))[-1]
    for task in after:
        if task["id"] == root["id"]:
            continue
        assert task["reason"] == "parent_cancelled", task
        last = (await server.transitions(task["id"]))[-1]
        assert last["to_state"] == "cancelled" and last["reason"] == "parent_cancelled"
        assert last["seq"] < root_row["seq"], "a descendant ended after its root"
    supervisor = server.services.supervisor
    await eventually(lambda: _idle(supervisor), within=5, what="every job to stop")


async def _full_tree(server: LiveServer, root_id: str, size: int) -> list[dict[str, Any]] | None:
    tasks = await tree_of(server, root_id)
    return tasks if len(tasks) == size else None


async def _count(server: LiveServer, root_id: str, predicate: Any) -> int:
    return sum(1 for t in await tree_of(server, root_id) if predicate(t))


async def _idle(supervisor: Any) -> bool:
    return not supervisor.running


async def test_ten_parents_on_ten_slots_do_not_deadlock(database_url: str) -> None:
    """The issue's case: 10 parents, 2 children each, 10 slots. Waiting parents hold no slot."""
    async with live_server(make_settings(database_url, max_concurrent_tasks=10)) as server:
        parents = [
            await server.create("demo.fanout", params={"children": 2, "seconds": 0.3}) for _ in range(10)
        ]
        for parent in parents:
            done = await server.wait_for(parent["id"], timeout=30)
            assert done["state"] == "completed" and done["result"] == {"children": 2}, done
            children = (await server.client.get("/api/v2/tasks", params={"parent_id": parent["id"]})).json()
            assert children["total"] == 2
            assert {c["state"] for c in children["items"]} == {"completed"}
            assert all(c["root_id"] == parent["id"] for c in children["items"])
        assert not server.services.supervisor.waiting


async def test_a_waiting_parent_shows_what_it_waits_for(server: LiveServer) -> None:
    parent = await server.create("demo.fanout", params={"children": 3, "seconds": 1.5})
    waiting = await eventually(lambda: _waiting(server, parent["id"], 3), what="waiting_for")
    assert waiting["state"] == "running"
    children = (await server.client.get("/api/v2/tasks", params={"parent_id": parent["id"]})).json()["items"]
    assert sorted(waiting["waiting_for"]) == sorted(c["id"] for c in children)
    done = await server.wait_for(parent["id"])
    assert done["waiting_for"] == [] and done["progress"] == 100


async def _waiting(server: LiveServer, task_id: str, count: int) -> dict[str, Any] | None:
    task = await server.get(task_id)
    return task if len(task["waiting_for"]) == count else None


async def test_a_batch_graph_runs_in_dependency_order(server: LiveServer) -> None:
    """By index within the batch: 0 <- 1 <- 2, and 3 depends on 0 and 2."""
    items = (
        await batch(
            server,
            {"type": "demo.sleep", "params": {"seconds": 0.2, "steps": 1}, "name": "a"},
            {"type": "demo.sleep", "params": {"seconds": 0.2, "steps": 1}, "name": "b", "depends_on": [0]},
            {"type": "demo.noop", "name": "c", "depends_on": [1]},
            {"type": "demo.noop", "name": "d", "depends_on": [0, 2]},
        )
    )["items"]
    ids = [t["id"] for t in items]
    assert items[1]["depends_on"] == [ids[0]] and items[3]["depends_on"] == [ids[0], ids[2]]
    assert [t["blocked"] for t in items] == [False, True, True, True]
    done = [await server.wait_for(task_id) for task_id in ids]
    assert [t["state"] for t in done] == ["completed"] * 4
    ends = {t["id"]: t for t in done}
    for task_id in ids[1:]:
        rows = await server.transitions(task_id)
        claimed = next(r["seq"] for r in rows if r["to_state"] == "preparing")
        for dependency in ends[task_id]["depends_on"]:
            completed = (await server.transitions(dependency))[-1]
            assert completed["to_state"] == "completed" and completed["seq"] < claimed


async def test_a_failed_dependency_cancels_its_dependents_transitively(server: LiveServer) -> None:
    items = (
        await batch(
            server,
            {"type": "demo.fail", "name": "fails"},
            {"type": "demo.noop", "name": "child", "depends_on": [0]},
            {"type": "demo.noop", "name": "grandchild", "depends_on": [1]},
            {"type": "demo.noop", "name": "unrelated"},
        )
    )["items"]
    ids = [t["id"] for t in items]
    ends = [await server.wait_for(task_id) for task_id in ids]
    assert [t["state"] for t in ends] == ["failed", "cancelled", "cancelled", "completed"]
    assert ends[1]["reason"] == f"dependency_failed: {ids[0]}"
    assert ends[2]["reason"] == f"dependency_failed: {ids[1]}"
    for task_id in ids[1:3]:  # never left the queue
        assert [r["to_state"] for r in await server.transitions(task_id)] == ["queued", "cancelled"]
    # A task made later on a failed dependency is born cancelled.
    late = await server.create("demo.noop", depends_on=[ids[0]])
    assert late["state"] == "cancelled" and late["reason"] == f"dependency_failed: {ids[0]}"


@pytest.mark.parametrize(
    ("tasks", "index", "says"),
    [
        (
            [{"type": "demo.noop", "depends_on": ["00000000-0000-4000-8000-000000000000"]}],
            0,
            "does not exist",
        ),
        ([{"type": "demo.noop", "depends_on": [1]}, {"type": "demo.noop", "depends_on": [0]}], 0, "cycle"),
        ([{"type": "demo.noop"}, {"type": "demo.noop", "depends_on": [1]}], 1, "cycle"),
        ([{"type": "demo.noop", "depends_on": [5]}], 0, "no task at index 5"),
        ([{"type": "demo.noop", "depends_on": ["not-an-id"]}], 0, "is not a task id"),
    ],
)
async def test_bad_dependencies_are_422_naming_the_task(
    server: LiveServer, tasks: list[dict[str, Any]], index: int, says: str
) -> None:
    answer = await server.client.post("/api/v2/tasks/batch", json={"tasks": tasks})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "validation_error" and says in body["detail"], body
    assert body["index"] == index and body["detail"].startswith(f"tasks[{index}]")
    assert (await server.client.get("/api/v2/tasks")).json()["total"] == 0, "a refused batch created tasks"


async def test_approval_gates_approve_and_reject(server: LiveServer) -> None:
    items = (
        await batch(
            server,
            {"type": "demo.noop", "name": "gated", "requires_approval": True},
            {"type": "demo.noop", "name": "after", "depends_on": [0]},
            {"type": "demo.noop", "name": "gated too", "requires_approval": True},
            {"type": "demo.noop", "name": "after too", "depends_on": [2]},
        )
    )["items"]
    ids = [t["id"] for t in items]
    assert items[0]["blocked"] and items[0]["requires_approval"] and items[0]["waiting_for_input"]
    await asyncio.sleep(0.6)  # three polls: a gated task is not claimed
    assert (await server.get(ids[0]))["state"] == "queued"
    inbox = (await server.client.get("/api/v2/questions")).json()["items"]
    gates = {q["task_id"]: q for q in inbox}
    assert set(gates) == {ids[0], ids[2]}
    assert (
        gates[ids[0]]["choices"] == ["approve", "reject"] and gates[ids[0]]["context"]["kind"] == "approval"
    )
    for task_id, answer in ((ids[0], "approve"), (ids[2], "reject")):
        url = f"/api/v2/tasks/{task_id}/questions/{gates[task_id]['id']}/answer"
        response = await server.client.post(url, json={"answer": answer})
        assert response.status_code == 200, response.text
    ends = [await server.wait_for(task_id) for task_id in ids]
    assert [t["state"] for t in ends] == ["completed", "completed", "cancelled", "cancelled"]
    assert ends[2]["reason"] == "rejected" and ends[3]["reason"] == f"dependency_failed: {ids[2]}"


async def test_history_and_the_event_stream_follow_one_tree(server: LiveServer) -> None:
    async with connect(f"{server.ws_url}?root_id={NOBODY}") as other:
        assert json.loads(await other.recv())["tasks"] == []
        parent = await server.create("demo.fanout", params={"children": 2, "seconds": 0.2})
        bystander = await server.create("demo.noop")
        async with connect(f"{server.ws_url}?root_id={parent['id']}") as ws:
            snapshot = json.loads(await ws.recv())
            assert {t["root_id"] for t in snapshot["tasks"]} <= {parent["id"]}
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(20):
                while not any(m.get("task_id") == parent["id"] and m.get("to") == "completed" for m in seen):
                    seen.append(json.loads(await ws.recv()))
        await server.wait_for(bystander["id"])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await other.recv()  # nothing of either tree
    tree = await tree_of(server, parent["id"])
    assert len(tree) == 3 and bystander["id"] not in {t["id"] for t in tree}
    assert {m["task_id"] for m in seen if m["type"] == "transition"} == {t["id"] for t in tree}
    replay_ids: set[str] = set()
    async with connect(f"{server.ws_url}?root_id={parent['id']}&since=0") as ws:
        async with asyncio.timeout(5):
            while len(replay_ids) < 3 or (message := json.loads(await ws.recv()))["task_id"] != parent["id"]:
                message = json.loads(await ws.recv())
                replay_ids.add(message["task_id"])
                if message["task_id"] == parent["id"] and message["to"] == "completed":
                    break
    assert replay_ids <= {t["id"] for t in tree}


async def test_schedules_api_validates_and_pauses(server: LiveServer) -> None:
    bad = [
        {"type": "demo.noop"},
        {"type": "demo.noop", "cron": "* * * * *", "interval_seconds": 5},
        {"type": "demo.noop", "cron": "61 * * * *"},
        {"type": "demo.noop", "cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"type": "demo.nope", "interval_seconds": 5},
        {"type": "demo.sleep", "interval_seconds": 5, "params": {"seconds": "x"}},
        {"type": "demo.noop", "interval_seconds": 0.5},
    ]
    for body in bad:
        answer = await server.client.post("/api/v2/schedules", json=body)
        assert answer.status_code == 422, (body, answer.text)
    created = await server.client.post(
        "/api/v2/schedules", json={"type": "demo.noop", "interval_seconds": 1, "name": "every second"}
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    fired = await eventually(lambda: _fired(server, schedule["id"], 2), what="two firings")
    assert all(t["trigger"] == "scheduled" for t in fired)
    paused = (await server.client.post(f"/api/v2/schedules/{schedule['id']}/pause")).json()
    assert paused["paused"] and paused["next_run_at"] is None
    count = len(await _fired(server, schedule["id"], 0) or [])
    await asyncio.sleep(1.5)
    assert len(await _fired(server, schedule["id"], 0) or []) == count, "a paused schedule fired"
    changed = await server.client.patch(f"/api/v2/schedules/{schedule['id']}", json={"cron": "0 3 * * *"})
    assert changed.status_code == 200 and changed.json()["interval_seconds"] is None, changed.text
    resumed = (await server.client.post(f"/api/v2/schedules/{schedule['id']}/resume")).json()
    assert not resumed["paused"] and resumed["next_run_at"].endswith(":00Z")
    assert (await server.client.delete(f"/api/v2/schedules/{schedule['id']}")).status_code == 204
    assert (await server.client.get(f"/api/v2/schedules/{schedule['id']}")).status_code == 404


async def _fired(server: LiveServer, schedule_id: str, at_least: int) -> list[dict[str, Any]] | None:
    params = {"trigger_source": f"schedule:{schedule_id}", "limit": 500}
    items: list[dict[str, Any]] = (await server.client.get("/api/v2/tasks", params=params)).json()["items"]
    return items if len(items) >= at_least else None


# -- random graphs ------------------------------------------------------------------------------


@st.composite
def graphs(draw: st.DrawFn) -> list[tuple[str, list[int]]]:
    """Up to 7 tasks; each depends on some earlier ones (so no cycle); some fail."""
    size = draw(st.integers(1, 7))
    nodes = []
    for i in range(size):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        nodes.append((draw(st.sampled_from(["demo.noop", "demo.noop", "demo.fail"])), deps))
    return nodes


@given(graph=graphs())
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
async def test_random_graphs_never_run_a_task_before_its_dependencies(
    database_url: str, graph: list[tuple[str, list[int]]]
) -> None:
    """No task is claimed before every dependency completed; every task ends; a task with a
    failed dependency upstream is cancelled without ever leaving the queue."""
    async with live_server(make_settings(database_url)) as server:
        items = (await batch(server, *({"type": kind, "depends_on": deps} for kind, deps in graph)))["items"]
        ids = [t["id"] for t in items]
        ends = [await server.wait_for(task_id) for task_id in ids]
        for i, (kind, deps) in enumerate(graph):
            rows = await server.transitions(ids[i])
            failed_upstream = any(ends[d]["state"] != "completed" for d in deps)
            if failed_upstream:
                assert ends[i]["state"] == "cancelled", (graph, i, ends[i])
                assert [r["to_state"] for r in rows] == ["queued", "cancelled"], (graph, i)
                continue
            assert ends[i]["state"] == ("failed" if kind == "demo.fail" else "completed"), (graph, i)
            claimed = next(r["seq"] for r in rows if r["to_state"] == "preparing")
            for d in deps:
                assert (await server.transitions(ids[d]))[-1]["seq"] < claimed, (graph, i, d)


async def test_a_dependency_on_another_owners_task_is_422(database_url: str) -> None:
    async with live_server(make_settings(database_url, auth="tokens")) as server:
        tokens = {}
        for name in ("alice", "bob"):
            _, tokens[name] = await auth.create_token(server.services.store, name, auth.Role.OPERATOR)
        alice = {"Authorization": f"Bearer {tokens['alice']}"}
        bob = {"Authorization": f"Bearer {tokens['bob']}"}
        hers = (await server.client.post("/api/v2/tasks", json={"type": "demo.noop"}, headers=alice)).json()
        answer = await server.client.post(
            "/api/v2/tasks", json={"type": "demo.noop", "depends_on": [hers["id"]]}, headers=bob
        )
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert body["error"] == "validation_error" and "belongs to someone else" in body["detail"]
        assert body["task_id"] == hers["id"]
        mine = await server.client.post(
            "/api/v2/tasks", json={"type": "demo.noop", "depends_on": [hers["id"]]}, headers=alice
        )
        assert mine.status_code == 201, mine.text
