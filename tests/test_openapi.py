"""The OpenAPI document says what each operation can answer, and nothing it cannot.

The document is read from a live server; then, with the database cut off behind a TCP relay
(PostgreSQL itself untouched), every operation is called: each one that documents 503 answers
exactly that, `unavailable` with `Retry-After`, and each one that does not answers as usual.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from taskstate.web.auth import Role, create_token
from tests.support.servers import LiveServer, live_server, make_settings
from tests.support.tcp_proxy import tcp_proxy
from tests.support.waits import wait_until

METHODS = {"get", "put", "post", "patch", "delete"}

#: A valid request body for each operation that takes one (the rest are called without).
BODIES: dict[str, Any] = {
    "create_task": {"type": "demo.noop"},
    "create_tasks_batch": {"tasks": [{"type": "demo.noop"}]},
    "answer_question": {"answer": "yes"},
    "create_token": {"name": "ci", "role": "viewer"},
    "create_schedule": {"type": "demo.noop", "interval_seconds": 60},
    "update_schedule": {"paused": True},
}
#: What answers without the database: its own process (healthz), its code (the lifecycle),
#: its settings (config).
NO_DATABASE = {"healthz", "get_lifecycle", "get_config"}


@pytest.fixture
async def sqlite_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'doc.db'}")) as server:
        yield server


@pytest.fixture
async def document(sqlite_server: LiveServer) -> dict[str, Any]:
    document: dict[str, Any] = (await sqlite_server.client.get("/openapi.json")).json()
    return document


def operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId: (method, path, operation)."""
    return {
        op["operationId"]: (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


async def test_each_operation_documents_only_what_it_answers(document: dict[str, Any]) -> None:
    ops = operations(document)
    responses = {op_id: set(op["responses"]) for op_id, (_, _, op) in ops.items()}
    # None documents a 500: none answers one by design.
    assert [op_id for op_id, codes in responses.items() if "500" in codes] == []
    # A read by id: not found, not unavailable; no 422 (a path parameter fails no validation).
    assert {"404", "503"} <= responses["get_task"] and "422" not in responses["get_task"]
    assert "422" not in responses["cancel_task"] and "413" not in responses["cancel_task"]
    # The browser guard refuses a body (or a content type) that is not JSON on any POST or PATCH.
    body_methods = {op_id for op_id, (method, _, _) in ops.items() if method in {"POST", "PUT", "PATCH"}}
    assert {op_id for op_id, codes in responses.items() if "415" in codes} == body_methods
    # What takes a body can be refused for it.
    for op_id in ("create_task", "create_tasks_batch", "answer_question", "create_schedule"):
        assert {"413", "415", "422"} <= responses[op_id], op_id
    # What needs no database does not say it may be unavailable; everything else does.
    unavailable = {op_id for op_id, codes in responses.items() if "503" in codes}
    assert unavailable == set(ops) - NO_DATABASE
    # Any request may come from a host or an origin that is not allowed.
    assert all({"400", "403"} <= codes for codes in responses.values())
    # FastAPI's own validation error schema is gone: no answer of ours has it.
    assert "HTTPValidationError" not in document["components"]["schemas"]
    # A 503 tells when to try again.
    for op_id in unavailable - {"readyz"}:
        answer = ops[op_id][2]["responses"]["503"]
        assert answer["headers"]["Retry-After"]["schema"] == {"type": "integer"}, op_id
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


async def test_the_document_names_its_server_and_types_json_values(document: dict[str, Any]) -> None:
    assert document["servers"] == [{"url": "/", "description": "This server."}]
    schemas = document["components"]["schemas"]
    result = schemas["TaskPublic"]["properties"]["result"]
    assert {s["type"] for s in result["anyOf"]} == {"object", "array", "string", "number", "boolean", "null"}
    assert "result" in schemas["TaskPublic"]["required"]
    for model, field in [
        ("QuestionPublic", "context"),
        ("QuestionPublic", "answer"),
        ("AnswerRequest", "answer"),
        ("TaskPublic", "service_info"),
    ]:
        assert schemas[model]["properties"][field]["anyOf"] == result["anyOf"], (model, field)
    assert schemas["ErrorBody"]["properties"]["detail"]["type"] == "string"


async def test_every_operation_that_documents_415_answers_it_to_a_form(
    sqlite_server: LiveServer, document: dict[str, Any]
) -> None:
    """What an HTML form on another page sends (text, no preflight): each POST and PATCH
    refuses it with the 415 it documents, before anything else (the ids are unknown)."""
    for op_id, (method, path, op) in sorted(operations(document).items()):
        if "415" not in op["responses"]:
            continue
        method, url, _ = request_of(method, path, op_id)
        answer = await sqlite_server.client.request(
            method, url, content=b"a=1", headers={"content-type": "text/plain"}
        )
        assert (answer.status_code, answer.json()["error"]) == (415, "unsupported_media_type"), op_id


#: With auth off, these touch the database only to check a token: they answer without it.
ONLY_TO_AUTHENTICATE = {"list_task_types"}


def request_of(method: str, path: str, op_id: str) -> tuple[str, str, Any]:
    url = re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)
    return method, url, BODIES.get(op_id)


async def call_all(
    server: LiveServer, ops: dict[str, tuple[str, str, dict[str, Any]]], headers: dict[str, str]
) -> dict[str, httpx.Response]:
    answers = {}
    for op_id, (method, path, _) in sorted(ops.items()):
        method, url, body = request_of(method, path, op_id)
        answers[op_id] = await server.client.request(method, url, json=body, headers=headers)
    return answers


@pytest.mark.parametrize("auth", ["off", "tokens"])
async def test_every_operation_that_documents_503_answers_it_when_the_database_is_gone(
    pg_url: str, auth: str
) -> None:
    target = sa.make_url(pg_url)
    async with tcp_proxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        url = target.set(port=proxy.port).render_as_string(hide_password=False)
        async with live_server(make_settings(url, auth=auth)) as server:
            ops = operations((await server.client.get("/openapi.json")).json())
            assert len(ops) >= 30
            headers = {}
            if auth == "tokens":
                _, token = await create_token(server.services.store, "admin", Role.ADMIN)
                headers["authorization"] = f"Bearer {token}"
            without_database = NO_DATABASE | (ONLY_TO_AUTHENTICATE if auth == "off" else set())
            await proxy.cut()

            answers = await call_all(server, ops, headers)
            wrong = []
            for op_id, answer in answers.items():
                documented = set(ops[op_id][2]["responses"])
                if op_id in without_database:
                    if answer.status_code != 200:
                        wrong.append(f"{op_id}: {answer.status_code} {answer.text[:200]}")
                elif op_id == "readyz":
                    if (answer.status_code, answer.json()["status"]) != (503, "unavailable"):
                        wrong.append(f"{op_id}: {answer.status_code} {answer.text[:200]}")
                elif answer.status_code != 503 or "503" not in documented:
                    wrong.append(f"{op_id}: {answer.status_code} {answer.text[:200]}")
                elif answer.json()["error"] != "unavailable" or answer.headers.get("retry-after") != "1":
                    wrong.append(f"{op_id}: {answer.json()} {dict(answer.headers)}")
            assert wrong == [], "\n".join(wrong)

            # The database back: the service goes on, its writes included.
            await proxy.restore()

            async def ready() -> bool:
                return (await server.client.get("/readyz")).status_code == 200

            await wait_until(ready, "readyz to answer 200", within=30, poll=0.2)
            created = await server.client.post("/api/v2/tasks", json={"type": "demo.noop"}, headers=headers)
            assert created.status_code == 201, created.text
            answers = await call_all(server, ops, headers)
            assert all(a.status_code < 500 for a in answers.values()), {
                k: (a.status_code, a.text[:200]) for k, a in answers.items() if a.status_code >= 500
            }
