"""/metrics, security headers, CORS, and the process's JSON log lines."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from taskstate.logconfig import JsonFormatter, TextFormatter
from taskstate.web import auth
from tests.support.databases import open_store
from tests.support.processes import ServerProcess
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.waits import wait_for_task


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
        async with httpx.AsyncClient(base_url=server.url) as client:
            task = (
                await client.post("/api/v2/tasks", json={"type": "demo.fail", "params": {"message": "x"}})
            ).json()
            await wait_for_task(client, task["id"], within=15)
    finally:
        await server.terminate()
    lines = [json.loads(x) for x in server.log_text().splitlines() if x.startswith("{")]
    assert lines, server.log_text()
    assert all({"ts", "level", "logger", "message", "worker_id", "task_id"} <= set(x) for x in lines)
    assert all(x["worker_id"] for x in lines)
    assert any(x["task_id"] == task["id"] for x in lines), "no line names the task"


async def test_tokens_never_reach_the_log(tmp_path: Path) -> None:
    """Not from uvicorn's access and WebSocket lines (`?token=`), nor from any other logger."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'tokens.db'}"
    async with open_store(url) as store:
        row, token = await auth.create_token(store, "alice", auth.Role.ADMIN)
    secret = token.rsplit("_", 1)[1]
    server = ServerProcess(url, tmp_path, TASKSTATE_AUTH="tokens")
    server.log_level = "info"
    try:
        await server.start()
        events = server.url.replace("http://", "ws://", 1) + "/api/v2/events"
        async with connect(f"{events}?token={token}") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
        async with connect(f"{events}?since=1&token={token}x") as ws:  # refused: a wrong secret
            assert json.loads(await ws.recv())["error"] == "unauthorized"
        async with httpx.AsyncClient(base_url=server.url) as client:
            bearer = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/v2/workers", headers=bearer)).status_code == 200
            assert (await client.get(f"/api/v2/tasks?token={token}", headers=bearer)).status_code == 200
    finally:
        await server.terminate()
    text = server.log_text(tail=None)
    assert secret not in text, [line for line in text.splitlines() if secret in line]
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    ws_lines = [x["message"] for x in lines if "/api/v2/events" in x["message"]]
    assert any(f"token=ts_{row['id']}_[redacted]" in m for m in ws_lines), ws_lines
    assert any("since=1&token=" in m and "[redacted]" in m for m in ws_lines), ws_lines
    assert any('"GET /api/v2/tasks?token=' in x["message"] for x in lines), text[-3000:]


def test_both_log_formats_redact_tokens_in_messages_and_tracebacks() -> None:
    token = "ts_0123456789ab_" + "S" * 43
    for formatter in (JsonFormatter(), TextFormatter()):
        try:
            raise ValueError(f"refused: Authorization: Bearer {token}")
        except ValueError:
            exc_info = sys.exc_info()
        record = logging.LogRecord(
            "uvicorn.error",
            logging.INFO,
            __file__,
            1,
            '%s - "WebSocket %s" [accepted]',
            ("127.0.0.1:5000", f"/api/v2/events?token={token}"),
            exc_info,
        )
        line = formatter.format(record)
        assert "S" * 43 not in line, line
        assert "/api/v2/events?token=ts_0123456789ab_[redacted]" in line, line
        assert "Bearer ts_0123456789ab_[redacted]" in line, line
