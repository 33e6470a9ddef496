"""What routes depend on, as `Annotated` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from taskstate.config import Settings
from taskstate.core.pgsync import PostgresSync
from taskstate.core.reads import TaskReads
from taskstate.core.store import Store
from taskstate.runtime.registry import JobRegistry
from taskstate.runtime.supervisor import Supervisor
from taskstate.web.auth import ANONYMOUS, Principal, RevocationWatch, Role, authenticate, bearer
from taskstate.web.metrics import Metrics


@dataclass
class Services:
    settings: Settings
    store: Store
    registry: JobRegistry
    supervisor: Supervisor
    revocations: RevocationWatch
    sync: PostgresSync | None = None
    metrics: Metrics | None = None

    @property
    def reads(self) -> TaskReads:
        return self.store.reads


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """Async on purpose: FastAPI runs a plain `def` dependency in a worker thread, which
    cost a thread hop on every request (most of a `GET /tasks/{id}`'s latency)."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_principal(request: Request) -> Principal:
    services = services_of(request)
    if services.settings.auth == "off":
        return ANONYMOUS
    return await authenticate(
        services.store,
        bearer(request.headers.get("authorization")),
        shared_tasks=services.settings.auth_shared_tasks,
    )


def requires(role: Role) -> object:
    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        principal.require(role)
        return principal

    return Depends(dependency)


ViewerDep = Annotated[Principal, requires(Role.VIEWER)]
OperatorDep = Annotated[Principal, requires(Role.OPERATOR)]
AdminDep = Annotated[Principal, requires(Role.ADMIN)]
