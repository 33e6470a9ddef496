"""The Python client of a taskstate server: `Client` (synchronous; `AsyncClient` in aio.py).

It knows URLs, the token and the contract's error shape, and nothing of the command
line: it is made from a base URL, a token and a timeout, and reports every failure as a
`ClientError` carrying the contract's error code and the HTTP status. The command line
is built on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"

Json = dict[str, Any]


class ClientError(Exception):
    """The server refused a request or answered it with something unusable.

    `message` is one readable line (more for a validation error's fields); `code` is
    the contract's error code (`not_found`, `invalid_transition`, ...) and `status`
    the HTTP status, each when the server gave one.
    """

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    @classmethod
    def from_response(cls, response: httpx.Response) -> ClientError:
        """The contract's `{"error", "detail"}` as one readable line (and the rest, if any)."""
        status = f"{response.status_code} {response.reason_phrase}".strip()
        try:
            body = response.json()
        except ValueError:
            body = None
        code: str | None = None
        if isinstance(body, dict) and "error" in body:
            code = body["error"] if isinstance(body["error"], str) else None
            detail = body.get("detail")
            text = detail if isinstance(detail, str) else json.dumps(detail)
            message = f"{status}: {body['error']}: {text}"
            extra = {k: v for k, v in body.items() if k not in ("error", "detail", "errors")}
            if extra:
                message += f" ({', '.join(f'{k}={v}' for k, v in extra.items())})"
            errors = body.get("errors")
            if isinstance(errors, list) and len(errors) > 0:
                for error in errors[:10]:
                    if isinstance(error, dict):
                        where = ".".join(str(p) for p in error.get("loc") or [] if p != "body")
                        message += f"\n  {where or '-'}: {error.get('msg')}"
        else:
            snippet = response.text.strip()[:300]
            message = f"{status}: {snippet}" if snippet else status
        return cls(message, code=code, status=response.status_code)


def auth_headers(token: str | None) -> dict[str, str]:
    """The request headers that carry `token`, for HTTP and for the event stream alike."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class ServerUnreachable(ClientError):
    """No answer from the server: no connection, or none that lasted."""

    @classmethod
    def at(cls, url: str, exc: BaseException) -> ServerUnreachable:
        reason = str(exc) or type(exc).__name__
        return cls(f"cannot reach the server at {url}: {reason}")


class Client:
    """One server, one token: `request` answers the parsed JSON or raises a `ClientError`."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.base_url, headers=self.auth_headers(), timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Sequence[tuple[str, str | int | float | bool | None]] | None = None,
    ) -> Any:
        query = None if params is None else tuple(params)
        try:
            response = self._http.request(method, path, json=json, params=query)
        except httpx.TransportError as exc:
            raise ServerUnreachable.at(self.base_url, exc) from exc
        if response.status_code >= 400:
            raise ClientError.from_response(response)
        if response.status_code == 204:
            return None  # No Content: a DELETE that was done
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"the server answered {response.status_code} with something that is not JSON "
                f"({response.headers.get('content-type', 'no content-type')})",
                status=response.status_code,
            ) from None

    def events_url(self, query: dict[str, str]) -> str:
        """The WebSocket `/api/v2/events` with this query; the token goes in it too (CONTRACT §3)."""
        return events_url(self.base_url, self.token, query)

    def auth_headers(self) -> dict[str, str]:
        return auth_headers(self.token)

    # -- the contract's calls (CONTRACT §2) ------------------------------------------------

    def submit(self, task_type: str, params: Json | None = None, **options: Any) -> Json:
        """Start a task (`POST /api/v2/tasks`); `options`: name, priority, run_at,
        timeout_seconds, max_attempts, idempotency_key, depends_on, requires_approval, ..."""
        task: Json = self.request("POST", "/api/v2/tasks", json=submission(task_type, params, options))
        return task

    def get(self, task_id: str) -> Json:
        task: Json = self.request("GET", task_path(task_id))
        return task

    def cancel(self, task_id: str) -> Json:
        task: Json = self.request("POST", task_path(task_id, "cancel"))
        return task

    def stop(self, task_id: str) -> Json:
        task: Json = self.request("POST", task_path(task_id, "stop"))
        return task

    def retry(self, task_id: str) -> Json:
        task: Json = self.request("POST", task_path(task_id, "retry"))
        return task

    def answer(self, task_id: str, question_id: str, answer: Any) -> Json:
        path = task_path(task_id, "questions", quote(question_id, safe=""), "answer")
        task: Json = self.request("POST", path, json={"answer": answer})
        return task

    def tasks(self, **filters: Any) -> Json:
        """One page of history (`GET /api/v2/tasks`): `{items, next_cursor, total}`."""
        page: Json = self.request("GET", "/api/v2/tasks", params=history_query(filters))
        return page

    def wait(self, task_id: str, timeout: float | None = None) -> Json:
        """The task once it has ended: followed on the event stream, or polled while the
        stream cannot be reached. Raises `TimeoutError` after `timeout` seconds."""
        from taskstate.client.following import wait_sync

        return wait_sync(self, task_id, timeout)

    def events(
        self,
        *,
        since: int | None = None,
        task_id: str | None = None,
        root_id: str | None = None,
        reconnect_for: float = 60.0,
    ) -> Iterator[Json]:
        """Every event of the stream (CONTRACT §3), reconnecting with `since` when the
        connection drops: no transition is missed or repeated. Without `since` the first
        is the snapshot (its parts put together)."""
        from taskstate.client.following import events_sync

        return events_sync(self, since=since, task_id=task_id, root_id=root_id, reconnect_for=reconnect_for)


def events_url(base_url: str, token: str | None, query: dict[str, str]) -> str:
    url = httpx.URL(base_url + "/api/v2/events")
    scheme = "wss" if url.scheme == "https" else "ws"
    if token:
        query = {**query, "token": token}
    return str(url.copy_with(scheme=scheme).copy_merge_params(query))


def submission(task_type: str, params: Json | None, options: dict[str, Any]) -> Json:
    body: Json = {"type": task_type, **{k: v for k, v in options.items() if v is not None}}
    if params is not None:
        body["params"] = params
    return body


def history_query(filters: dict[str, Any]) -> list[tuple[str, str | int | float | bool | None]]:
    """`GET /api/v2/tasks`'s query; a list value (`state`) repeats its key."""
    query: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in filters.items():
        if value is None:
            continue
        for one in value if isinstance(value, list | tuple) else [value]:
            query.append((key, one))
    return query


def task_path(task_id: str, *rest: str) -> str:
    """`/api/v2/tasks/{id}[/rest...]`, the id quoted so that whatever was typed stays one path segment."""
    return "/".join(["/api/v2/tasks", quote(task_id.strip(), safe=""), *rest])


def schedule_path(schedule_id: str, *rest: str) -> str:
    """`/api/v2/schedules/{id}[/rest...]`, quoted as `task_path` quotes."""
    return "/".join(["/api/v2/schedules", quote(schedule_id.strip(), safe=""), *rest])
