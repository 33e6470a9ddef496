"""What routes depend on, as `Annotated` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from taskstate.config import Settings
from taskstate.jobs import JobRegistry
from taskstate.metrics import Metrics
from taskstate.pgsync import PostgresSync
from taskstate.store import Store
from taskstate.supervisor import Supervisor


@dataclass
class Services:
    settings: Settings
    store: Store
    registry: JobRegistry
    supervisor: Supervisor
    sync: PostgresSync | None = None
    metrics: Metrics | None = None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
