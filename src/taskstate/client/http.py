"""A synchronous client for a taskstate server's HTTP API (CONTRACT §2).

It knows URLs, the token and the contract's error shape, and nothing of the command
line: it is made from a base URL, a token and a timeout, and reports every failure
as a `ClientError`, so that it can grow into the public Python client.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
        url = httpx.URL(self.base_url + "/api/v2/events")
        scheme = "wss" if url.scheme == "https" else "ws"
        if self.token:
            query = {**query, "token": self.token}
        return str(url.copy_with(scheme=scheme).copy_merge_params(query))

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def task_path(task_id: str, *rest: str) -> str:
    """`/api/v2/tasks/{id}[/rest...]`, the id quoted so that whatever was typed stays one path segment."""
    return "/".join(["/api/v2/tasks", quote(task_id.strip(), safe=""), *rest])


def schedule_path(schedule_id: str, *rest: str) -> str:
    """`/api/v2/schedules/{id}[/rest...]`, quoted as `task_path` quotes."""
    return "/".join(["/api/v2/schedules", quote(schedule_id.strip(), safe=""), *rest])
