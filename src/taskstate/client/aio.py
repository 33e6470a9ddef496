"""`AsyncClient`: the Python client of a taskstate server, for asyncio code.

The same calls as `Client` (http.py), awaited; `events` is an async iterator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from taskstate.client.http import (
    DEFAULT_URL,
    ClientError,
    Json,
    ServerUnreachable,
    auth_headers,
    events_url,
    history_query,
    submission,
    task_path,
)


class AsyncClient:
    """One server, one token: every call answers the contract's JSON or raises a `ClientError`."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=auth_headers(token), timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Sequence[tuple[str, str | int | float | bool | None]] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, json=json, params=None if params is None else tuple(params)
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable.at(self.base_url, exc) from exc
        if response.status_code >= 400:
            raise ClientError.from_response(response)
        return None if response.status_code == 204 else response.json()

    def events_url(self, query: dict[str, str]) -> str:
        return events_url(self.base_url, self.token, query)

    async def submit(self, task_type: str, params: Json | None = None, **options: Any) -> Json:
        """Start a task; `options` as `Client.submit` takes them."""
        task: Json = await self.request("POST", "/api/v2/tasks", json=submission(task_type, params, options))
        return task

    async def get(self, task_id: str) -> Json:
        task: Json = await self.request("GET", task_path(task_id))
        return task

    async def cancel(self, task_id: str) -> Json:
        task: Json = await self.request("POST", task_path(task_id, "cancel"))
        return task

    async def stop(self, task_id: str) -> Json:
        task: Json = await self.request("POST", task_path(task_id, "stop"))
        return task

    async def retry(self, task_id: str) -> Json:
        task: Json = await self.request("POST", task_path(task_id, "retry"))
        return task

    async def answer(self, task_id: str, question_id: str, answer: Any) -> Json:
        path = task_path(task_id, "questions", quote(question_id, safe=""), "answer")
        task: Json = await self.request("POST", path, json={"answer": answer})
        return task

    async def tasks(self, **filters: Any) -> Json:
        page: Json = await self.request("GET", "/api/v2/tasks", params=history_query(filters))
        return page

    async def wait(self, task_id: str, timeout: float | None = None) -> Json:  # noqa: ASYNC109 (the API's word)
        """The task once it has ended (see `Client.wait`)."""
        from taskstate.client.following import wait_async

        return await wait_async(self, task_id, timeout)

    def events(
        self,
        *,
        since: int | None = None,
        task_id: str | None = None,
        root_id: str | None = None,
        reconnect_for: float = 60.0,
    ) -> AsyncIterator[Json]:
        """Every event of the stream, reconnecting with `since` (see `Client.events`)."""
        from taskstate.client.following import events_async

        return events_async(self, since=since, task_id=task_id, root_id=root_id, reconnect_for=reconnect_for)
