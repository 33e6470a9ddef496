"""Hostile and mistaken input gets the contract's error (`{"error", "detail", ...}`), never a 500.

Each test sends many variants and reports every one that is answered wrongly, so that one
failure shows the whole picture. They run against one real server per backend (shared by
the module: none of them depends on what the others created).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from taskstate.core.nesting import MAX_JSON_DEPTH
from tests.support.servers import LiveServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAR_FUTURE = "2999-01-01T00:00:00Z"
JSON = {"content-type": "application/json"}
TASKS = "/api/v2/tasks"
BATCH = "/api/v2/tasks/batch"
CLEANUP = "/api/v2/tasks/cleanup"


@pytest.fixture(scope="module")
def server(shared_server: LiveServer) -> LiveServer:
    """conftest's `shared_server`: one real server per backend for this module (overrides
    conftest's per-test `server`)."""
    return shared_server


# -- helpers ---------------------------------------------------------------------------------


def _label(response: httpx.Response) -> str:
    url = str(response.request.url)
    return f"{response.request.method} {url[:120]}"


def error_problem(response: httpx.Response, status: int, code: str | None = None) -> str | None:
    """What is wrong with this answer, if it is not the contract's error `code` with `status`."""
    where = f"{_label(response)} -> {response.status_code} {response.text[:200]!r}"
    if response.status_code != status:
        return f"{where}: expected {status}"
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"{where}: not JSON"
    try:
        body = response.json()
    except ValueError:
        return f"{where}: body is not JSON"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or "detail" not in body:
        return f"{where}: not the error shape"
    if not isinstance(body["detail"], str) or not body["detail"]:
        return f"{where}: detail is not a text"
    if code is not None and body["error"] != code:
        return f"{where}: expected error {code!r}"
    return None


def handled_problem(response: httpx.Response, ok: int) -> str | None:
    """Accepted (`ok`) or refused as a validation error; anything else (a 500) is a problem."""
    if response.status_code == ok:
        return None
    return error_problem(response, 422, "validation_error")


def check(problems: list[str | None]) -> None:
    found = [p for p in problems if p]
    assert not found, f"{len(found)} wrong answer(s):\n" + "\n".join(found)


async def total(server: LiveServer) -> int:
    response = await server.client.get(TASKS, params={"limit": 1})
    assert response.status_code == 200, response.text
    count: int = response.json()["total"]
    return count


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def task(**fields: Any) -> dict[str, Any]:
    """A valid create body (that will not run during the test), with `fields` over it."""
    return {"type": "demo.noop", "run_at": FAR_FUTURE, **fields}


# -- bodies that are not a JSON object -------------------------------------------------------

MALFORMED = [
    b'{"type": ',
    b"{'type': 'demo.noop'}",
    b'{"type": "demo.noop",}',
    b'{"type": "demo.noop"} trailing',
    b"{type: demo.noop}",
    b'{"type": "demo.noop" "name": "x"}',
    b'{"type": "demo.noop"',
    b"\x00\x01\x02",
    b"<xml/>",
]
WRONG_KIND = [b"[]", b'[{"type": "demo.noop"}]', b'"demo.noop"', b"42", b"-1.5", b"true", b"null"]


async def test_malformed_json_is_a_validation_error(server: LiveServer) -> None:
    before = await total(server)
    problems = []
    for path in (TASKS, BATCH, CLEANUP):
        for raw in MALFORMED:
            response = await server.client.post(path, content=raw, headers=JSON)
            problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
    assert await total(server) == before


async def test_body_that_is_not_an_object_is_a_validation_error(server: LiveServer) -> None:
    before = await total(server)
    problems = []
    for path in (TASKS, BATCH, CLEANUP):
        for raw in WRONG_KIND:
            if path == CLEANUP and raw == b"null":
                continue  # the clean-up body is optional: null means "the default"
            response = await server.client.post(path, content=raw, headers=JSON)
            problems.append(error_problem(response, 422, "validation_error"))
    for path in (TASKS, BATCH):
        for headers in (JSON, {}):
            response = await server.client.post(path, content=b"", headers=headers)
            problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
    assert await total(server) == before


async def test_wrong_content_type_is_refused(server: LiveServer) -> None:
    before = await total(server)
    valid = json.dumps(task()).encode()
    cases = [
        ("text/plain", valid),
        ("application/x-www-form-urlencoded", b"type=demo.noop"),
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="type"\r\n\r\n',
        ),
        ("application/xml", b"<task><type>demo.noop</type></task>"),
        ("application/octet-stream", valid),
    ]
    problems = []
    for content_type, raw in cases:
        for path in (TASKS, BATCH):
            response = await server.client.post(path, content=raw, headers={"content-type": content_type})
            if response.status_code == 415:
                problems.append(error_problem(response, 415))
            else:
                problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
    assert await total(server) == before


async def test_undecodable_body_is_a_validation_error(server: LiveServer) -> None:
    """Bytes that are not UTF-8, or JSON nested past what the parser takes: a bad body (422)."""
    before = await total(server)
    bodies = [
        b'{"type": "demo.noop", "name": "\xff\xfe"}',
        b'{"type": "demo.noop", "name": "\xc0\xaf"}',
        b'{"type": "\xed\xa0\x80"}',
        b'{"type": "test.echo", "params": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    ]
    problems = []
    for raw in bodies:
        path = BATCH if len(raw) > 60_000 else TASKS
        response = await server.client.post(path, content=raw, headers=JSON)
        problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
    assert await total(server) == before


# -- nesting ---------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """An array nested `depth` levels deep: `[[...]]`."""
    return b"[" * depth + b"]" * depth


def too_deep_problem(response: httpx.Response) -> str | None:
    problem = error_problem(response, 422, "validation_error")
    if problem is None and f"limit of {MAX_JSON_DEPTH} levels" not in response.json()["detail"]:
        problem = f"{_label(response)}: the detail does not state the limit: {response.text[:200]}"
    return problem


async def pending_question(server: LiveServer) -> tuple[str, str]:
    """A running `demo.ask` task and its pending question's id."""
    asked = await server.create("demo.ask", params={"question": "deep?", "choices": ["yes", "no"]})
    async with asyncio.timeout(15):
        while True:
            task = await server.get(asked["id"])
            if task["pending_questions"]:
                return asked["id"], task["pending_questions"][0]["id"]
            await asyncio.sleep(0.05)


async def test_json_nested_past_the_limit_is_a_validation_error_on_every_json_route(
    server: LiveServer,
) -> None:
    """900 levels used to exhaust the stack in our own walk (a 500), 1,100 in the parser;
    every depth past MAX_JSON_DEPTH is now a 422 that states the limit, before any parsing."""
    task_id, question_id = await pending_question(server)
    answer = f"{TASKS}/{task_id}/questions/{question_id}/answer"
    before = await total(server)
    problems = []
    for depth in (MAX_JSON_DEPTH, 900, 1_100, 30_000):  # 30,000 levels: 60 KB, under 64 KiB
        params = b'{"a": ' + nested(depth) + b"}"
        body = b'{"type": "test.echo", "run_at": "2999-01-01T00:00:00Z", "params": ' + params + b"}"
        for path, raw in (
            (TASKS, body),
            (answer, b'{"answer": ' + nested(depth) + b"}"),
            (CLEANUP, b'{"older_than_days": ' + nested(depth) + b"}"),
        ):
            response = await server.client.post(path, content=raw, headers=JSON)
            problems.append(too_deep_problem(response))
        response = await server.client.post(TASKS, content=body)  # no content type at all
        problems.append(error_problem(response, 422, "validation_error"))
    for depth in (900, 1_100, 100_000):
        body = b'{"tasks": [{"type": "test.echo", "params": {"a": ' + nested(depth) + b"}}]}"
        # In a task of the batch, and as a bare top-level array.
        for raw in (body, nested(depth)):
            response = await server.client.post(BATCH, content=raw, headers=JSON)
            problems.append(too_deep_problem(response))
    check(problems)
    assert await total(server) == before
    assert (await server.get(task_id))["pending_questions"], "the question is still pending"
    # The server is unharmed: the question can still be answered.
    ok = await server.client.post(answer, json={"answer": "yes"})
    assert ok.status_code == 200, ok.text
    assert (await server.wait_for(task_id))["result"] == {"answer": "yes"}


async def test_json_at_the_nesting_limit_is_accepted(server: LiveServer) -> None:
    """`{"type", "params": {"a": X}}` nests 2 levels around X: X may nest 62 deep, not 63."""
    inner = MAX_JSON_DEPTH - 2
    at_limit = {"type": "test.echo", "run_at": FAR_FUTURE, "params": {"a": json.loads(nested(inner))}}
    response = await server.client.post(TASKS, json=at_limit)
    assert response.status_code == 201, response.text[:300]
    stored = await server.get(response.json()["id"])
    assert stored["params"] == at_limit["params"]
    over = {**at_limit, "params": {"a": json.loads(nested(inner + 1))}}
    check([too_deep_problem(await server.client.post(TASKS, json=over))])
    # Brackets inside strings are text, not nesting.
    text = {"type": "test.echo", "run_at": FAR_FUTURE, "params": {"a": "[" * 10_000 + '\\"{'}}
    response = await server.client.post(TASKS, json=text)
    assert response.status_code == 201, response.text[:300]


async def test_nan_and_infinity_are_not_json(server: LiveServer) -> None:
    """RFC 8259 has no NaN or Infinity: they are refused, not silently stored as null."""
    before = await total(server)
    problems = []
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        raw = b'{"type": "test.echo", "run_at": "2999-01-01T00:00:00Z", "params": {"x": ' + literal + b"}}"
        response = await server.client.post(TASKS, content=raw, headers=JSON)
        problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
    assert await total(server) == before


# -- fields of the wrong type or out of range ------------------------------------------------

WRONG_FIELDS: list[tuple[str, Any]] = [
    ("priority", "high"),
    ("priority", 1.5),
    ("priority", True),
    ("priority", "1"),
    ("priority", 10**40),
    ("priority", -(10**40)),
    ("priority", None),
    ("max_attempts", 0),
    ("max_attempts", -1),
    ("max_attempts", 101),
    ("max_attempts", "3"),
    ("max_attempts", 2.5),
    ("max_attempts", 10**40),
    ("name", 5),
    ("name", ""),
    ("name", ["a"]),
    ("name", {"a": 1}),
    ("name", "x" * 201),
    ("type", 5),
    ("type", None),
    ("type", ""),
    ("type", ["demo.noop"]),
    ("timeout_seconds", 0),
    ("timeout_seconds", -1),
    ("timeout_seconds", "soon"),
    ("timeout_seconds", 10**40),
    ("trigger", "cron"),
    ("trigger", 5),
    ("trigger", "MANUAL"),
    ("run_at", "tomorrow"),
    ("run_at", "2024-13-01T00:00:00Z"),
    ("run_at", []),
    ("idempotency_key", ""),
    ("idempotency_key", 5),
    ("idempotency_key", "k" * 201),
    ("trigger_source", 5),
    ("trigger_source", "s" * 201),
]


async def test_wrong_types_name_the_field(server: LiveServer) -> None:
    before = await total(server)
    problems = []
    for field, value in WRONG_FIELDS:
        response = await server.client.post(TASKS, json=task(**{field: value}))
        problem = error_problem(response, 422, "validation_error")
        if problem is None and not any(field in e.get("loc", []) for e in response.json().get("errors", [])):
            problem = f"{field}={value!r:.40}: the errors do not name the field: {response.text[:300]}"
        problems.append(problem)
    check(problems)
    assert await total(server) == before


async def test_huge_integer_in_params_is_stored_exactly_or_refused(server: LiveServer) -> None:
    for value in (10**40, -(10**40), 2**63, 2**64 + 1):
        response = await server.client.post(TASKS, json=task(type="test.echo", params={"n": value}))
        check([handled_problem(response, 201)])
        if response.status_code == 201:
            stored = await server.get(response.json()["id"])
            assert stored["params"] == {"n": value}
    response = await server.client.post(TASKS, json=task(type="demo.count", params={"to": 10**40}))
    check([error_problem(response, 422, "validation_error")])


async def test_unknown_fields_are_refused_by_name(server: LiveServer) -> None:
    before = await total(server)
    problems = []
    extras = {
        "colour": "red",
        "id": str(uuid.uuid4()),
        "state": "completed",
        "Type": "demo.noop",
        "result": 1,
        "attempt": 2,
        "retry_of": str(uuid.uuid4()),
        "worker_id": "me",
    }
    for field, value in extras.items():
        for path, body, loc in (
            (TASKS, task(**{field: value}), ["body", field]),
            (BATCH, {"tasks": [task(), task(**{field: value})]}, ["body", "tasks", 1, field]),
        ):
            response = await server.client.post(path, json=body)
            problem = error_problem(response, 422, "validation_error")
            if problem is None and loc not in [e["loc"] for e in response.json().get("errors", [])]:
                problem = f"{path} {field}: the errors do not name {loc}: {response.text[:300]}"
            problems.append(problem)
    response = await server.client.post(BATCH, json={"tasks": [task()], "atomic": False})
    problems.append(error_problem(response, 422, "validation_error"))
    response = await server.client.post(CLEANUP, json={"older_than_days": 0, "dry_run": True})
    problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
    assert await total(server) == before


async def test_unknown_task_type(server: LiveServer) -> None:
    before = await total(server)
    problems = []
    for name in ("no.such.type", "DEMO.NOOP", "demo.noop ", "demo", "x" * 200, "../../etc/passwd"):
        response = await server.client.post(TASKS, json=task(type=name))
        problems.append(error_problem(response, 422, "unknown_task_type"))
        response = await server.client.post(BATCH, json={"tasks": [task(), task(type=name)]})
        problem = error_problem(response, 422, "unknown_task_type")
        if problem is None and response.json().get("index") != 1:
            problem = f"batch with unknown type {name!r:.30}: index not named: {response.text[:300]}"
        problems.append(problem)
    check(problems)
    assert await total(server) == before


async def test_params_failing_the_schema_of_the_type(server: LiveServer) -> None:
    before = await total(server)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("demo.sleep", {"seconds": -1}, "seconds"),
        ("demo.sleep", {"seconds": "five"}, "seconds"),
        ("demo.sleep", {"steps": 0}, "steps"),
        ("demo.sleep", {"steps": 1.5}, "steps"),
        ("demo.sleep", {"secs": 1}, "secs"),
        ("demo.count", {"to": -1}, "to"),
        ("demo.count", {"delay": [1]}, "delay"),
        ("demo.fail", {"message": {"nested": True}}, "message"),
        ("demo.noop", {"anything": 1}, "anything"),
        ("test.gate", {}, "gate"),
    ]
    problems = []
    for type_, params, field in cases:
        response = await server.client.post(TASKS, json=task(type=type_, params=params))
        problem = error_problem(response, 422, "validation_error")
        if problem is None:
            body = response.json()
            errors = body.get("errors")
            if not isinstance(errors, list) or not errors:
                problem = f"{type_} {params}: no `errors` list: {body}"
            elif field not in json.dumps(errors):
                problem = f"{type_} {params}: errors do not name {field!r}: {errors}"
            elif type_ not in body["detail"]:
                problem = f"{type_} {params}: detail does not name the type: {body['detail']!r}"
        problems.append(problem)
    check(problems)
    assert await total(server) == before


async def test_params_that_are_not_an_object(server: LiveServer) -> None:
    before = await total(server)
    problems = []
    for params in ([1, 2], [], "x", "", 5, 0, True, 1.5):
        response = await server.client.post(TASKS, json=task(type="test.echo", params=params))
        problem = error_problem(response, 422, "validation_error")
        if problem is None and not any("params" in e["loc"] for e in response.json().get("errors", [])):
            problem = f"params={params!r}: errors do not name params: {response.text[:300]}"
        problems.append(problem)
    check(problems)
    assert await total(server) == before


# -- sizes -----------------------------------------------------------------------------------


def _echo_body(size: int) -> bytes:
    return json.dumps(task(type="test.echo", params={"blob": "x" * size})).encode()


async def test_oversized_body_with_content_length(server: LiveServer) -> None:
    before = await total(server)
    problems = []
    for size in (70_000, 1_000_000):
        response = await server.client.post(TASKS, content=_echo_body(size), headers=JSON)
        problems.append(error_problem(response, 413, "payload_too_large"))
    check(problems)
    assert await total(server) == before


async def test_oversized_chunked_body_without_content_length(server: LiveServer) -> None:
    before = await total(server)

    def chunked(raw: bytes) -> Any:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(raw), 4096):
                yield raw[i : i + 4096]

        return chunks()

    small = await server.client.post(TASKS, content=chunked(_echo_body(100)), headers=JSON)
    assert "content-length" not in small.request.headers
    assert small.request.headers.get("transfer-encoding") == "chunked"
    assert small.status_code == 201, f"a small chunked body is fine: {small.text}"

    big = await server.client.post(TASKS, content=chunked(_echo_body(200_000)), headers=JSON)
    assert "content-length" not in big.request.headers
    check([error_problem(big, 413, "payload_too_large")])
    assert await total(server) == before + 1


async def test_params_over_64_kib(server: LiveServer) -> None:
    before = await total(server)
    just_under = await server.client.post(TASKS, json=task(type="test.echo", params={"blob": "x" * 60_000}))
    assert just_under.status_code == 201, just_under.text[:300]

    problems = []
    over = task(type="test.echo", params={"blob": "x" * (64 * 1024)})
    response = await server.client.post(TASKS, json=over)
    problems.append(error_problem(response, 413, "payload_too_large"))
    # Inside a batch (whose body may be larger), the params of one task are over the limit.
    response = await server.client.post(BATCH, json={"tasks": [task(), task(), over]})
    problem = error_problem(response, 413, "payload_too_large")
    if problem is None and response.json().get("index") != 2:
        problem = f"the batch does not name index 2: {response.text[:300]}"
    problems.append(problem)
    check(problems)
    assert await total(server) == before + 1


async def test_batch_size_limits(server: LiveServer) -> None:
    before = await total(server)
    problems = []
    for body in (
        {"tasks": []},
        {"tasks": [task()] * 501},
        {"tasks": task()},
        {"tasks": None},
        {"tasks": [None]},
        {"tasks": ["demo.noop"]},
        {},
    ):
        response = await server.client.post(BATCH, json=body)
        problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
    assert await total(server) == before


# -- text that a database cannot store -------------------------------------------------------


async def test_lone_surrogates_are_a_validation_error(server: LiveServer) -> None:
    """`\\ud800` is valid JSON syntax but not Unicode text: refused like any invalid string."""
    before = await total(server)
    bodies = [
        b'{"type": "demo.noop", "name": "\\ud800"}',
        b'{"type": "\\udfff"}',
        b'{"type": "demo.noop", "trigger_source": "\\ud800x"}',
        b'{"type": "demo.noop", "idempotency_key": "\\ud800"}',
        b'{"type": "test.echo", "params": {"a": "\\ud800"}}',
        b'{"type": "test.echo", "params": {"\\ud800": 1}}',
        b'{"type": "test.echo", "params": {"a": ["ok", {"b": "\\udc00"}]}}',
    ]
    problems = []
    for raw in bodies:
        raw = raw[:-1] + b', "run_at": "2999-01-01T00:00:00Z"}'
        response = await server.client.post(TASKS, content=raw, headers=JSON)
        problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
    assert await total(server) == before


async def test_nul_characters_are_stored_or_refused_never_a_500(server: LiveServer) -> None:
    """PostgreSQL cannot store U+0000 in text or jsonb; SQLite can. Either way, no 500."""
    problems = []
    cases: list[tuple[str, dict[str, Any], str, Any]] = [
        ("name", task(name="a\x00b"), "name", "a\x00b"),
        ("trigger_source", task(trigger_source="s\x00"), "trigger_source", "s\x00"),
        ("idempotency_key", task(idempotency_key=f"k\x00{uuid.uuid4()}"), "idempotency_key", None),
        ("params value", task(type="test.echo", params={"a": "x\x00y"}), "params", {"a": "x\x00y"}),
        ("params key", task(type="test.echo", params={"a\x00": 1}), "params", {"a\x00": 1}),
    ]
    for label, body, field, expected in cases:
        response = await server.client.post(TASKS, json=body)
        problem = handled_problem(response, 201)
        if problem:
            problems.append(f"{label}: {problem}")
        elif response.status_code == 201:
            stored = await server.client.get(f"{TASKS}/{response.json()['id']}")
            if stored.status_code != 200:
                problems.append(f"{label}: created, then GET answers {stored.status_code}")
            elif expected is not None and stored.json()[field] != expected:
                problems.append(f"{label}: stored {stored.json()[field]!r}, sent {expected!r}")
    for param in ("q", "type", "created_after"):
        value = "2024-01-01T00:00:00\x00" if param == "created_after" else "a\x00b"
        response = await server.client.get(TASKS, params={param: value})
        problems.append(handled_problem(response, 200))
    check(problems)


async def test_datetimes_out_of_range_are_never_a_500(server: LiveServer) -> None:
    """Valid ISO 8601 that does not fit in UTC (year 0 or 10000 once converted)."""
    edges = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999-23:59"]
    problems = []
    for value in edges:
        response = await server.client.post(TASKS, json=task(run_at=value))
        problems.append(handled_problem(response, 201))
        for param in ("created_after", "created_before"):
            response = await server.client.get(TASKS, params={param: value})
            problems.append(handled_problem(response, 200))
    check(problems)


# -- ids, query parameters, routes, methods --------------------------------------------------

BAD_IDS = [
    "nope",
    "123",
    "00000000-0000-0000-0000-00000000000g",
    "' OR '1'='1",
    "\x00",
    "ü",
    "x" * 2000,
    "%",
    "{task_id}",
]


async def test_unknown_and_non_uuid_ids_on_every_task_route(server: LiveServer) -> None:
    spec = (await server.client.get("/openapi.json")).json()
    routes = [
        (method.upper(), path, "requestBody" in op)
        for path, item in spec["paths"].items()
        if "{task_id}" in path
        for method, op in item.items()
    ]
    templates = {(m, p) for m, p, _ in routes}
    assert {
        ("GET", "/api/v2/tasks/{task_id}"),
        ("GET", "/api/v2/tasks/{task_id}/transitions"),
        ("POST", "/api/v2/tasks/{task_id}/cancel"),
        ("POST", "/api/v2/tasks/{task_id}/retry"),
    } <= templates

    problems = []
    for task_id in [str(uuid.uuid4()), str(uuid.uuid4()).upper(), *BAD_IDS]:
        for method, template, has_body in routes:
            path = template.replace("{task_id}", quote(task_id, safe=""))
            path = path.replace("{question_id}", str(uuid.uuid4()))
            response = await server.client.request(method, path, json={"answer": "yes"} if has_body else None)
            problems.append(error_problem(response, 404, "not_found"))
    check(problems)


async def test_bad_history_query_parameters(server: LiveServer) -> None:
    cases: list[tuple[str, list[tuple[str, str]]]] = [
        ("state", [("state", "bogus")]),
        ("state", [("state", "completed"), ("state", "bogus")]),
        ("state", [("state", "")]),
        ("state", [("state", "COMPLETED")]),
        ("limit", [("limit", "0")]),
        ("limit", [("limit", "501")]),
        ("limit", [("limit", "-1")]),
        ("limit", [("limit", "abc")]),
        ("limit", [("limit", "1.5")]),
        ("limit", [("limit", str(10**40))]),
        ("limit", [("limit", "\uff11")]),  # fullwidth 1
        ("limit", [("limit", "\u0663")]),  # Arabic-Indic 3
        ("limit", [("limit", "\u00b2")]),  # superscript 2
        ("created_after", [("created_after", "notadate")]),
        ("created_after", [("created_after", "2024-02-30T00:00:00Z")]),
        ("created_before", [("created_before", "yesterday")]),
        ("trigger", [("trigger", "bogus")]),
        ("q", [("q", "x" * 201)]),
        ("type", [("type", "t" * 201)]),
        ("cursor", [("cursor", "garbage")]),
        ("cursor", [("cursor", "c" * 501)]),
    ]
    problems = []
    for name, params in cases:
        response = await server.client.get(TASKS, params=params)
        problem = error_problem(response, 422, "validation_error")
        if problem is None and name not in response.text:
            problem = f"{params!r:.80}: the error does not name {name!r}: {response.text[:300]}"
        problems.append(problem)
    check(problems)


async def test_log_query_parameters_take_only_ascii_digits(server: LiveServer) -> None:
    """`after` and `limit` of /logs are integers in ASCII digits; others are a 422, not 3 or 1."""
    created = await server.create("demo.noop", run_at=FAR_FUTURE)
    logs = f"{TASKS}/{created['id']}/logs"
    problems = []
    for name in ("after", "limit"):
        for value in ("\uff11", "\u0663", "\u00b2", "1\u00b2", "\U0001d7d7", "-1", ""):
            response = await server.client.get(logs, params={name: value})
            problem = error_problem(response, 422, "validation_error")
            if problem is None and name not in response.text:
                problem = f"{name}={value!r}: the error does not name {name}: {response.text[:200]}"
            problems.append(problem)
    check(problems)
    assert (await server.client.get(logs, params={"after": "0", "limit": "1"})).status_code == 200


async def test_crafted_cursors_are_refused(server: LiveServer) -> None:
    """Cursors this server never issued: 422 when they do not decode to a position, and never a 500."""
    malformed = [
        "garbage",
        "!!!!",
        "====",
        b64("5"),
        b64("null"),
        b64("[]"),
        b64('{"a": 1}'),
        b64("[1, 2]"),
        b64('["x", "y"]'),
        b64('["2024-01-01T00:00:00+00:00", "a", "b"]'),
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    ]
    # Well-formed (instant, id) pairs with an id or an instant that no task can have.
    odd_positions = [
        b64('["2024-01-01T00:00:00+00:00", "\\ud800"]'),
        b64('["2024-01-01T00:00:00+00:00", "a\\u0000b"]'),
        b64('["9999-12-31T23:59:59-01:00", "00000000-0000-0000-0000-000000000000"]'),
        b64('["0001-01-01T00:00:00+01:00", "00000000-0000-0000-0000-000000000000"]'),
    ]
    problems = []
    for cursor in malformed:
        response = await server.client.get(TASKS, params={"cursor": cursor})
        problems.append(error_problem(response, 422, "validation_error"))
    for cursor in odd_positions:
        response = await server.client.get(TASKS, params={"cursor": cursor})
        problems.append(handled_problem(response, 200))
    check(problems)


async def test_unknown_routes_are_404_with_the_error_shape(server: LiveServer) -> None:
    problems = []
    for method, path in (
        ("GET", "/api/v2/nope"),
        ("POST", "/api/v2/nope"),
        ("GET", "/api/v3/tasks"),
        ("GET", f"/api/v2/tasks/{uuid.uuid4()}/nope"),
        ("POST", f"/api/v2/tasks/{uuid.uuid4()}/explode"),
        ("GET", "/api/v2/admin"),
        ("DELETE", "/api/v2/nothing/here"),
    ):
        response = await server.client.request(method, path)
        problems.append(error_problem(response, 404, "not_found"))
    check(problems)


async def test_wrong_methods_are_405_with_the_error_shape(server: LiveServer) -> None:
    task_id = uuid.uuid4()
    problems = []
    for method, path in (
        ("DELETE", TASKS),
        ("PUT", TASKS),
        ("PATCH", f"{TASKS}/{task_id}"),
        ("DELETE", f"{TASKS}/{task_id}"),
        ("GET", f"{TASKS}/{task_id}/cancel"),
        ("GET", f"{TASKS}/{task_id}/retry"),
        ("POST", f"{TASKS}/{task_id}/transitions"),
        ("POST", f"{TASKS}/active"),
        ("GET", "/api/v2/admin/reset"),
        ("POST", "/api/v2/task-types"),
        ("POST", "/healthz"),
        ("DELETE", "/readyz"),
    ):
        response = await server.client.request(method, path)
        problem = error_problem(response, 405, "method_not_allowed")
        if problem is None and "allow" not in response.headers:
            problem = f"{method} {path}: a 405 without an Allow header"
        problems.append(problem)
    check(problems)


async def test_invalid_transitions_are_409_with_from_and_to(server: LiveServer) -> None:
    done = await server.create("demo.noop")
    failed = await server.create("demo.fail")
    queued = await server.create("demo.noop", run_at=FAR_FUTURE)
    await server.wait_for(done["id"], "completed")
    await server.wait_for(failed["id"], "failed")

    problems = []
    for task_id, action, from_state, to_state in (
        (done["id"], "cancel", "completed", "cancelled"),
        (failed["id"], "cancel", "failed", "cancelled"),
        (done["id"], "retry", "completed", None),
        (queued["id"], "retry", "queued", None),
    ):
        response = await server.client.post(f"{TASKS}/{task_id}/{action}")
        problem = error_problem(response, 409, "invalid_transition")
        if problem is None:
            body = response.json()
            if (
                body.get("from") != from_state
                or (to_state and body.get("to") != to_state)
                or "to" not in body
            ):
                problem = f"{action} of a {from_state} task: from/to are {body}"
        problems.append(problem)
    check(problems)
    assert (await server.get(done["id"]))["state"] == "completed"
    assert (await server.get(failed["id"]))["state"] == "failed"
    assert (await server.get(queued["id"]))["state"] == "queued"
    assert (await server.client.post(f"{TASKS}/{queued['id']}/cancel")).status_code == 200


async def test_bad_cleanup_bodies(server: LiveServer) -> None:
    problems = []
    for body in (
        {"older_than_days": -1},
        {"older_than_days": "x"},
        {"older_than_days": [1]},
        {"older_than_days": 10**40},
        {"days": 1},
    ):
        response = await server.client.post(CLEANUP, json=body)
        problems.append(error_problem(response, 422, "validation_error"))
    check(problems)
