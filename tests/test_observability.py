"""/metrics, security headers, CORS, and the process's JSON log lines."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from tests.conftest import LiveServer, live_server, make_settings
from tests.processes import ServerProcess


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample, whatever order the exposition puts its labels in."""
    for line in text.splitlines():
        match = re.fullmatch(re.escape(name) + r"(?:\{(.*)\})? ([0-9.e+-]+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or "")) == labels:
            return float(match.group(2))
    raise AssertionError(f"{name}{labels} missing")


async def test_metrics_after_a_task_completes(server: LiveServer) -> None:
    task = await server.create("demo.noop")
    await server.wait_for(task["id"], "completed")
    failed = await server.create("demo.fail")
    await server.wait_for(failed["id"], "failed")
    response = await server.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "taskstate_tasks", state="completed") == 1
    assert metric(text, "taskstate_tasks", state="failed") == 1
    assert metric(text, "taskstate_transitions_total", from_state="collecting", to_state="completed") == 1
    assert metric(text, "taskstate_transitions_total", from_state="none", to_state="queued") == 2
    assert metric(text, "taskstate_task_duration_seconds_count", type="demo.noop", state="completed") == 1
    assert metric(text, "taskstate_queue_depth") == 0
    assert metric(text, "taskstate_queue_oldest_age_seconds") == 0
    assert metric(text, "taskstate_websocket_subscribers") == 0
    assert metric(text, "taskstate_db_transaction_seconds_count") >= 1
    assert "taskstate_sweeper_actions" in text


async def test_security_headers_and_no_cors_by_default(server: LiveServer) -> None:
    response = await server.client.get("/api/v2/tasks/active", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


async def test_cors_when_configured(database_url: str) -> None:
    settings = make_settings(database_url, cors_origins="https://ok.example")
    async with live_server(settings) as server:
        ok = await server.client.get("/api/v2/tasks/active", headers={"Origin": "https://ok.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ok.example"
        other = await server.client.get("/api/v2/tasks/active", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_serve_logs_json_lines_with_worker_and_task_ids(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}", tmp_path)
    server.log_level = "info"
    try:
        await server.start()
        import httpx

        async with httpx.AsyncClient(base_url=server.url) as client:
            task = (
                await client.post("/api/v2/tasks", json={"type": "demo.fail", "params": {"message": "x"}})
            ).json()
            for _ in range(300):
                if (await client.get(f"/api/v2/tasks/{task['id']}")).json()["is_terminal"]:
                    break
                await asyncio.sleep(0.05)
    finally:
        await server.terminate()
    lines = [json.loads(x) for x in server.log_text().splitlines() if x.startswith("{")]
    assert lines, server.log_text()
    assert all({"ts", "level", "logger", "message", "worker_id", "task_id"} <= set(x) for x in lines)
    assert all(x["worker_id"] for x in lines)
    assert any(x["task_id"] == task["id"] for x in lines), "no line names the task"
