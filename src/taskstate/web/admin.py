"""Operator routes: emergency reset, task types, health and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from taskstate import __version__
from taskstate.core import questions, states, sweep, workers
from taskstate.core.migrations import current_revision, head_revision
from taskstate.web import auth
from taskstate.web.deps import AdminDep, ServicesDep, ViewerDep
from taskstate.web.error_responses import error_responses
from taskstate.web.schemas import (
    ClientConfig,
    HealthStatus,
    Lifecycle,
    QuestionList,
    ResetResult,
    TaskTypeList,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenPublic,
    WorkerList,
)

router = APIRouter()


@router.post(
    "/api/v2/admin/reset",
    operation_id="reset",
    responses=error_responses(401, 415, 503),
    response_model=ResetResult,
    tags=["admin"],
)
async def reset(services: ServicesDep, _admin: AdminDep) -> dict[str, Any]:
    """Emergency reset: every non-terminal task ends (`cancelled`, reason `reset`) and every job stops.

    A task whose state cannot go to `cancelled` (`stopping`, `orphaned`) ends `failed` instead.
    """
    results = await services.store.reset(reason="reset", actor="admin")
    return {"reset": sum(1 for r in results if r.applied)}


@router.get(
    "/api/v2/workers",
    operation_id="list_workers",
    responses=error_responses(401, 503),
    response_model=WorkerList,
    tags=["admin"],
)
async def list_workers(services: ServicesDep, _admin: AdminDep) -> dict[str, Any]:
    """The instances, newest first, with their heartbeat age and the tasks they hold."""
    orphan_after = services.settings.orphan_after_seconds
    return {"items": await workers.list_workers(services.store.db, orphan_after=orphan_after)}


@router.get(
    "/api/v2/questions",
    operation_id="list_questions",
    responses=error_responses(401, 503),
    response_model=QuestionList,
    tags=["tasks"],
)
async def list_questions(services: ServicesDep, principal: ViewerDep) -> dict[str, Any]:
    """Every pending question across tasks, oldest first: an approvals inbox."""
    return {"items": await questions.pending(services.store, principal.owner_filter)}


@router.get(
    "/api/v2/tokens",
    operation_id="list_tokens",
    responses=error_responses(401, 503),
    response_model=TokenList,
    tags=["admin"],
)
async def list_tokens(services: ServicesDep, _admin: AdminDep) -> dict[str, Any]:
    """The API tokens (never their secrets)."""
    return {"items": await auth.list_tokens(services.store)}


@router.post(
    "/api/v2/tokens",
    operation_id="create_token",
    status_code=201,
    response_model=TokenCreated,
    responses=error_responses(
        401, 409, 413, 415, 422, 503, described={409: "A token of that name exists (`conflict`)."}
    ),
    tags=["admin"],
)
async def create_token(body: TokenCreate, services: ServicesDep, _admin: AdminDep) -> dict[str, Any]:
    """A new API token. The answer holds the token itself: the only time it is shown."""
    row, token = await auth.create_token(services.store, body.name, auth.Role(body.role))
    return {**row, "token": token}


@router.post(
    "/api/v2/tokens/{token_id}/revoke",
    operation_id="revoke_token",
    response_model=TokenPublic,
    responses=error_responses(401, 404, 415, 503),
    tags=["admin"],
)
async def revoke_token(token_id: str, services: ServicesDep, _admin: AdminDep) -> dict[str, Any]:
    return await auth.revoke_token(services.store, token_id[:16])


@router.get(
    "/api/v2/task-types",
    operation_id="list_task_types",
    responses=error_responses(
        401,
        503,
        described={
            503: "With TASKSTATE_AUTH=tokens, the token is checked in the database: that cannot "
            "be reached (`unavailable`); try again after `Retry-After` seconds."
        },
    ),
    response_model=TaskTypeList,
    tags=["tasks"],
)
async def list_task_types(services: ServicesDep, _viewer: ViewerDep) -> dict[str, Any]:
    return {
        "items": [
            {
                "name": spec.name,
                "description": spec.description,
                "params_schema": spec.params_model.model_json_schema(),
                "kind": spec.kind.value,
            }
            for spec in services.registry.specs()
        ]
    }


@router.get("/api/v2/states", operation_id="get_lifecycle", response_model=Lifecycle, tags=["tasks"])
async def get_lifecycle() -> dict[str, Any]:
    """The transition table and its rules: which calls each state allows, where a reset
    leaves each state. Public, like the contract it publishes."""
    return states.published()


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
        **error_responses(401, 503, beside_text=True),
    },
    tags=["health"],
)
async def metrics(services: ServicesDep, _viewer: ViewerDep) -> PlainTextResponse:
    """Prometheus metrics, prefixed `taskstate_`."""
    assert services.metrics is not None
    settings = services.settings
    await services.metrics.refresh(
        services.store.db,
        subscribers=services.store.bus.subscriber_count,
        running_jobs=len(services.supervisor.running),
        job_slots=settings.max_concurrent_tasks if settings.run_supervisor else 0,
        default_timeout=settings.task_timeout_seconds,
        orphan_after=settings.orphan_after_seconds,
    )
    return PlainTextResponse(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v2/config", operation_id="get_config", response_model=ClientConfig, tags=["health"])
async def get_config(services: ServicesDep) -> dict[str, Any]:
    """What the UI needs to know of the server's settings (no secrets; public)."""
    return {
        "task_polling_frequency": services.settings.task_polling_frequency,
        "auth": services.settings.auth,
        "version": __version__,
    }


@router.get("/healthz", operation_id="healthz", response_model=HealthStatus, tags=["health"])
async def healthz() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok", "checks": {}}


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus, "description": "Not ready: the failing checks say why."}},
    tags=["health"],
)
async def readyz(services: ServicesDep) -> Any:
    """Readiness: the database answers, the schema is at head, the supervisor runs and heartbeats.

    `stuck_tasks` (held tasks with no sign of life for longer than their timeout) is reported
    without failing readiness: the sweeper fails them.
    """
    settings = services.settings
    checks: dict[str, Any] = {}
    stuck: int | None = None
    try:
        await services.reads.ping()
        checks["database"] = "ok"
        revision = await current_revision(services.store.db.reader)
        checks["migrations"] = (
            "ok" if revision == head_revision() else f"at {revision}, head is {head_revision()}"
        )
        stuck = await sweep.count_stuck(services.store.db, settings.task_timeout_seconds)
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if settings.run_supervisor:
        supervisor = services.supervisor
        checks["supervisor"] = "ok" if supervisor.alive else "stopped"
        lag = supervisor.heartbeat_lag
        limit = max(3 * settings.heartbeat_seconds, settings.heartbeat_seconds + 5)
        checks["heartbeat"] = "ok" if lag <= limit else f"lagging: last heartbeat {lag:.1f} s ago"
    ok = all(v == "ok" for v in checks.values())
    if stuck is not None:
        checks["stuck_tasks"] = stuck
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return body if ok else JSONResponse(body, status_code=503)
