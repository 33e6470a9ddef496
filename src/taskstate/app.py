"""`Taskstate`: taskstate's API and UI as an application, its services as a context;
`create_app()`: the two together, the standalone service."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskstate import __version__, logconfig
from taskstate.config import Settings
from taskstate.core.bus import EventBus
from taskstate.core.db import open_database
from taskstate.core.maintenance import delete_finished_before, retention_cutoff
from taskstate.core.migrations import upgrade_to_head
from taskstate.core.pgsync import PostgresSync
from taskstate.core.store import NOTIFY_CHANNEL, Store
from taskstate.runtime import demo_jobs
from taskstate.runtime.context import JobLogHandler
from taskstate.runtime.identity import new_worker_id
from taskstate.runtime.registry import JobRegistry
from taskstate.runtime.supervisor import Supervisor
from taskstate.web import admin, insights, schedules, tasks
from taskstate.web.auth import RevocationWatch
from taskstate.web.deps import Services
from taskstate.web.error_responses import (
    EVERY_OPERATION,
    BodyLimitMiddleware,
    error_responses,
    install_error_handlers,
    only_documented_errors,
)
from taskstate.web.events import EVENT_STREAM_DOC
from taskstate.web.events import router as ws_router
from taskstate.web.guard import BrowserGuardMiddleware, allowed_hosts
from taskstate.web.metrics import HttpMetricsMiddleware, Metrics
from taskstate.web.paths import route_path

log = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent


def build_registry(settings: Settings) -> JobRegistry:
    registry = JobRegistry()
    if settings.demo_jobs:
        demo_jobs.register(registry)
    if settings.jobs_module:
        registry.load_module(settings.jobs_module)
    return registry


class FrontendMount(Mount):
    """The UI's files at `/`, but never for the API's paths.

    A mount at `/` matches every path, so it would answer a wrong method on an API route
    (GET /api/v2/tasks/{id}/cancel) with 404 and an unknown API path with 405 (StaticFiles
    refuses POST). Under these prefixes the router answers instead: 405 or 404, as JSON.
    """

    API_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and route_path(scope).startswith(self.API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)


def _frontend_dir() -> Path | None:
    for candidate in (_PACKAGE / "_frontend", _PACKAGE.parent.parent / "frontend"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def _ensure_sqlite_directory(url: str) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


async def _retention_loop(services: Services) -> None:
    settings = services.settings
    while True:
        await asyncio.sleep(settings.retention_interval_seconds)
        try:
            cutoff = retention_cutoff(settings.task_history_retention_days)
            deleted = await delete_finished_before(services.store, cutoff)
            if deleted:
                log.info("retention: deleted %d finished tasks", deleted)
        except Exception:
            log.exception("retention clean-up failed")


#: The UI loads nothing but our own files; no inline script may run (user data is never HTML).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeadersMiddleware:
    """Security headers on every answer; the CSP on all but the interactive API docs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = route_path(scope).startswith(("/docs", "/redoc"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ())) + _SECURITY_HEADERS
                if not docs:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def telemetry(settings: Settings) -> TelemetryConfig:
    """FastAPI's own OpenTelemetry instrumentation, on with TASKSTATE_TRACING=1 only.

    FastAPI makes a server span per request (named by its route, continuing the caller's
    `traceparent`) once a tracer provider exists, and, with `auto_configure`, sets one up
    exporting by OTLP from the `OTEL_EXPORTER_OTLP_*` variables: taskstate adds no code of
    its own for either. Off, it is told to make nothing, even when the process has a
    provider. Its OpenTelemetry metrics and logs stay off: /metrics and the JSON log lines
    have them. The spans of its internal steps (dependencies, serialization) are left out:
    one span per request.
    """
    on = settings.tracing
    return {"tracing": on, "metrics": False, "logs": False, "operation_spans": False, "auto_configure": on}


class Taskstate:
    """taskstate as a part of an application: its API (REST and the event stream) and, if
    asked, its UI as `app`, and its services (database, store, bus, supervisor) as `running()`.

    `create_app()` is one of these with its own lifespan. A FastAPI application of the
    user's own mounts `app` under a prefix and enters `running()` in its lifespan (a mounted
    application's own lifespan never runs): see `taskstate.embed`.
    """

    def __init__(
        self,
        registry: JobRegistry | None = None,
        settings: Settings | None = None,
        *,
        ui: bool = False,
    ) -> None:
        self.settings = settings or Settings()
        self.registry = registry if registry is not None else build_registry(self.settings)
        self.metrics = Metrics()
        self.worker_id = self.settings.worker_id or new_worker_id()
        # Every log line names the instance, the server's own start-up lines included.
        logconfig.worker_id = self.worker_id
        self._services: Services | None = None
        self.app = build_app(self.settings, lifespan=self._lifespan, ui=ui, metrics=self.metrics)

    @property
    def services(self) -> Services:
        """The running services (RuntimeError outside `running()`)."""
        if self._services is None:
            raise RuntimeError("taskstate is not running: enter `running()` in your lifespan")
        return self._services

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Services]:
        """The database migrated and open, the store, the bus and the supervisor started; all
        stopped again on the way out (running jobs get `shutdown_grace_seconds`)."""
        if self._services is not None:
            raise RuntimeError("taskstate is running already")
        settings = self.settings
        logconfig.worker_id = self.worker_id
        _ensure_sqlite_directory(settings.database_url)
        db = open_database(settings.database_url, pool_size=settings.db_pool_size)
        await upgrade_to_head(db.writer)
        bus = EventBus(settings.subscriber_queue_size)
        store = Store(db, bus)
        store.start(tail_seconds=settings.poll_seconds)
        sync = None
        if not db.is_sqlite:
            sync = PostgresSync(
                settings.database_url,
                NOTIFY_CHANNEL,
                store.instance_id,
                bus,
                committed_elsewhere=store.feed.request_catch_up,
                live_elsewhere=functools.partial(store.feed.live, forward=False),
            )
        if sync is not None:
            sync.start()
        supervisor = Supervisor(store, self.registry, settings, self.worker_id)
        store.on_local_commit(self.metrics.observe_commit)
        store.on_batch_committed(self.metrics.observe_batch)
        revocations = RevocationWatch(store, settings.token_recheck_seconds)
        services = Services(settings, store, self.registry, supervisor, revocations, sync, self.metrics)
        self._services = services
        self.app.state.services = services
        if settings.auth == "tokens":
            revocations.start()
        if settings.tracing:
            from taskstate import tracing  # only when on

            tracing.warn_without_provider()
        if settings.run_supervisor:
            await supervisor.start()
        retention = asyncio.create_task(_retention_loop(services))
        job_logs = JobLogHandler()
        logging.getLogger().addHandler(job_logs)
        try:
            yield services
        finally:
            logging.getLogger().removeHandler(job_logs)
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            await supervisor.stop()
            await revocations.close()
            if sync is not None:
                await sync.close()
            await store.close()
            await db.dispose()
            self._services = None

    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """`app`'s own lifespan: run when `app` is the application served (`create_app`),
        never when it is mounted in another one."""
        async with self.running():
            yield


def create_app(settings: Settings | None = None, registry: JobRegistry | None = None) -> FastAPI:
    """The standalone service: taskstate's API and UI at `/`, started by its own lifespan."""
    app = Taskstate(registry, settings, ui=True).app
    app.servers = [{"url": "/", "description": "This server."}]
    return app


class TaskstateAPI(FastAPI):
    """FastAPI, with an OpenAPI document that lists only the errors each operation answers."""

    def openapi(self) -> dict[str, Any]:
        return only_documented_errors(super().openapi())


def build_app(
    settings: Settings,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    ui: bool,
    metrics: Metrics,
) -> FastAPI:
    """The routes, error handlers and middleware of taskstate's API, and the UI if `ui`.

    Its paths are relative to wherever it is served: at `/` (`create_app`) or mounted under
    a prefix (`Taskstate`); the routes find the services in `request.app.state.services`,
    which `Taskstate.running()` sets.
    """
    app = TaskstateAPI(
        title="taskstate",
        version=__version__,
        summary="The single source of truth for the lifecycle of long-running jobs.",
        description=EVENT_STREAM_DOC,
        lifespan=lifespan,
        telemetry=telemetry(settings),
        # Any request can come from a host name or an origin that is not allowed (web/guard.py).
        responses=error_responses(*EVERY_OPERATION),
    )
    install_error_handlers(app)
    # Inside the security headers, so that its refusals carry them too.
    app.add_middleware(
        BrowserGuardMiddleware,
        hosts=allowed_hosts(settings.allowed_hosts, settings.host),
        origins=settings.cors_origins.split(","),
    )
    app.add_middleware(SecurityHeadersMiddleware)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        overrides={"/api/v2/tasks/batch": settings.max_batch_body_bytes},
    )
    # Outermost: it times every answer, refusals by the guards included.
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.include_router(tasks.router)
    app.include_router(admin.router)
    app.include_router(schedules.router)
    app.include_router(insights.router)
    app.include_router(ws_router)
    for route in app.routes:
        if isinstance(route, APIRoute):
            assert route.operation_id, f"route {route.path} has no operation_id"

    frontend = _frontend_dir() if ui else None
    if frontend is not None:
        app.router.routes.append(
            FrontendMount("/", StaticFiles(directory=frontend, html=True), name="frontend")
        )
    else:

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("docs")

    return app
