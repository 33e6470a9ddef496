"""The HTTP API as a test calls it: on a client of its own, or on a base URL (a client is
opened for the call), answering the decoded body once the status is the expected one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

#: An open client, or the base URL of a server (`http://127.0.0.1:PORT`).
Target = httpx.AsyncClient | str


@asynccontextmanager
async def client_of(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    if isinstance(target, httpx.AsyncClient):
        yield target
        return
    async with httpx.AsyncClient(base_url=target, timeout=30) as client:
        yield client


async def create_task(target: Target, type: str, **body: Any) -> dict[str, Any]:
    """POST /api/v2/tasks, which must answer 201; the task created."""
    async with client_of(target) as client:
        response = await client.post("/api/v2/tasks", json={"type": type, **body})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def get_task(target: Target, task_id: str) -> dict[str, Any]:
    """GET /api/v2/tasks/{id}, which must answer 200."""
    async with client_of(target) as client:
        response = await client.get(f"/api/v2/tasks/{task_id}")
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def get_transitions(target: Target, task_id: str) -> list[dict[str, Any]]:
    """GET /api/v2/tasks/{id}/transitions, which must answer 200: the task's rows, in order."""
    async with client_of(target) as client:
        response = await client.get(f"/api/v2/tasks/{task_id}/transitions")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
