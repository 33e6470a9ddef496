"""The contract's error shape for every failure, and the limit on request bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskstate.core.errors import PayloadTooLarge, ServiceUnavailable, TaskstateError
from taskstate.core.nesting import MAX_JSON_DEPTH, text_depth, too_deep_message
from taskstate.web.paths import route_path
from taskstate.web.schemas import ErrorBody

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

_DESCRIPTIONS = {
    400: "The `Host` header names a host this server does not answer for (`host_not_allowed`): "
    "see TASKSTATE_ALLOWED_HOSTS.",
    401: "No valid API token (`unauthorized`), when TASKSTATE_AUTH=tokens.",
    403: "The token's role, or the task's owner, does not allow it, or the request comes from "
    "another origin than this server or TASKSTATE_CORS_ORIGINS (`forbidden`).",
    404: "No such task (or other resource).",
    409: "The transition table does not allow it (`invalid_transition`, with `from` and `to`).",
    413: "The body or the params are over the limit (`payload_too_large`).",
    415: "A body, or a `Content-Type`, that is not JSON (`unsupported_media_type`): refused on "
    "every POST, PUT and PATCH, as an HTML form on another page could send it.",
    422: (
        "The request is not valid (`validation_error`, `unknown_task_type`). A JSON body that"
        f" nests arrays and objects deeper than {MAX_JSON_DEPTH} levels is refused as a"
        " `validation_error` before it is parsed."
    ),
    503: "The database cannot be reached, or the connection to it was lost (`unavailable`): "
    "nothing was done that the answer does not say; try again after `Retry-After` seconds.",
}

#: The errors any request can get, whatever its operation: the browser guard's (web/guard.py).
#: No operation documents a 500: none answers one by design (an unexpected exception still
#: gets the error shape, `internal_error`, and the server log has its traceback).
EVERY_OPERATION = (400, 403)

_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
}


_ERROR_BODY_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def error_responses(
    *statuses: int, described: Mapping[int, str] | None = None, beside_text: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, all with `ErrorBody` (a 503 with
    its `Retry-After` header); `described` overrides the usual description where a route's
    meaning is narrower. List only what the operation can answer to a request made as the
    document says: 503 where it reads or writes the database (authenticating a token does).

    `beside_text`: the route answers text; its errors are JSON all the same (FastAPI would
    file a `model` under the route's media type)."""
    texts = {**_DESCRIPTIONS, **(described or {})}
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        body: dict[str, Any] = {"content": _ERROR_BODY_JSON} if beside_text else {"model": ErrorBody}
        responses[status] = {**body, "description": texts.get(status, "Error.")}
        if status == 503:
            responses[status]["headers"] = _RETRY_AFTER
    return responses


_IMPLICIT_422 = "#/components/schemas/HTTPValidationError"


def only_documented_errors(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document without the 422 FastAPI adds to every operation that has a
    parameter, with its own `HTTPValidationError` schema (which no answer of ours has): a path
    parameter such as `task_id` fails no validation, and the operations that can answer a
    422 list it themselves, as `ErrorBody`. In place, and idempotent."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            content = responses.get("422", {}).get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") == _IMPLICIT_422:
                del responses["422"]
    schemas = document.get("components", {}).get("schemas", {})
    if _IMPLICIT_422.rsplit("/", 1)[1] in schemas and _IMPLICIT_422 not in json.dumps(document["paths"]):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def _clean_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e["loc"] if p != "body")
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TaskstateError)
    async def _taskstate_error(_request: Request, exc: TaskstateError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_errors(exc.errors())
        return JSONResponse(
            {"error": "validation_error", "detail": _summary(errors), "errors": errors},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (not UTF-8, nested too deep):
            # for the contract that is a bad body like any other.
            return JSONResponse(
                {
                    "error": "validation_error",
                    "detail": "the request body is not valid JSON text",
                    "errors": [{"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}],
                },
                status_code=422,
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if not exc.connection_invalidated:
            return await _unexpected(request, exc)
        log.warning("the database connection was lost: %s", exc.orig)
        return _unavailable("the database connection was lost; try again")

    # Connecting failed: refused, timed out, no route (an OSError), or no connection of the
    # pool came free in time. The requests of a service whose only I/O is its database.
    @app.exception_handler(OSError)
    @app.exception_handler(PoolTimeout)
    async def _unreachable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("the database cannot be reached: %r", exc)
        return _unavailable("the database cannot be reached; try again")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            {
                "error": "internal_error",
                "detail": "an unexpected error occurred; see the server log",
            },
            status_code=500,
        )


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(ServiceUnavailable(detail).to_body(), status_code=503, headers={"Retry-After": "1"})


class BodyLimitMiddleware:
    """The limits on request bodies, applied before anything parses them.

    413 for a body over the size limit, without reading more than the limit; 422 for a JSON
    body nested deeper than `MAX_JSON_DEPTH` levels, measured on the raw bytes (the parser,
    pydantic and our own walks all recurse per level: a deep enough document exhausts the
    stack in any of them, and then even the error handling).
    """

    def __init__(self, app: ASGIApp, *, default: int, overrides: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.overrides = overrides

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(route_path(scope), self.default)
        content_type = b""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value
            if name == b"content-length":
                try:
                    too_large = int(value) > limit
                except ValueError:
                    too_large = False
                if too_large:
                    await self._reject(send, limit)
                    return
        # Without a Content-Length (a chunked body), read up to the limit here: an exception
        # raised while FastAPI reads the body would become its 400 "error parsing the body".
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # http.disconnect: the app sees what arrived
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._reject(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _may_be_parsed_as_json(content_type) and text_depth(body) > MAX_JSON_DEPTH:
            await self._too_deep(send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(send: Send, limit: int) -> None:
        response = JSONResponse(
            PayloadTooLarge(f"the request body is over the limit of {limit} bytes").to_body(),
            status_code=413,
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    @staticmethod
    async def _too_deep(send: Send) -> None:
        detail = too_deep_message("the request body")
        response = JSONResponse(
            {
                "error": "validation_error",
                "detail": detail,
                "errors": [{"loc": ["body"], "msg": detail, "type": "json_too_deep"}],
            },
            status_code=422,
        )
        await send({"type": "http.response.start", "status": 422, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def _may_be_parsed_as_json(content_type: bytes) -> bool:
    """No content type (FastAPI may try JSON), `application/json` or `application/*+json`."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return (
        not media
        or media == b"application/json"
        or (media.startswith(b"application/") and media.endswith(b"+json"))
    )
