"""Routes for schedules: recurring tasks (CONTRACT §6)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from taskstate.core import schedules
from taskstate.core.errors import NotFound
from taskstate.web.auth import Principal
from taskstate.web.deps import OperatorDep, ServicesDep, ViewerDep
from taskstate.web.error_responses import error_responses
from taskstate.web.schemas import Schedule, ScheduleCreate, ScheduleList, ScheduleUpdate

router = APIRouter(prefix="/api/v2/schedules", tags=["schedules"])


async def _owned(services: ServicesDep, principal: Principal, schedule_id: str) -> dict[str, Any]:
    try:
        schedule_id = str(uuid.UUID(schedule_id))
    except ValueError:
        raise NotFound(f"no schedule with id {schedule_id!r}") from None
    row = await schedules.get_row(services.store, schedule_id)
    principal.check_owner(row["owner"])
    return dict(row)


@router.post(
    "",
    operation_id="create_schedule",
    status_code=status.HTTP_201_CREATED,
    response_model=Schedule,
    responses=error_responses(401, 413, 415, 422, 503),
)
async def create_schedule(
    body: ScheduleCreate, services: ServicesDep, principal: OperatorDep
) -> dict[str, Any]:
    """A recurring task: every firing creates one task (`trigger: scheduled`,
    `trigger_source: schedule:<id>`), once whatever the number of instances."""
    params = services.registry.validate_params(body.type, body.params, services.settings.max_params_bytes)
    values = body.model_dump(exclude={"params"})
    values.update(params=params, name=body.name or body.type, owner=principal.name)
    return await schedules.create(services.store, values)


@router.get(
    "", operation_id="list_schedules", response_model=ScheduleList, responses=error_responses(401, 503)
)
async def list_schedules(services: ServicesDep, principal: ViewerDep) -> dict[str, Any]:
    return {"items": await schedules.list_all(services.store, principal.owner_filter)}


@router.get(
    "/{schedule_id}",
    operation_id="get_schedule",
    response_model=Schedule,
    responses=error_responses(401, 404, 503),
)
async def get_schedule(schedule_id: str, services: ServicesDep, principal: ViewerDep) -> dict[str, Any]:
    return schedules.payload(await _owned(services, principal, schedule_id))


@router.patch(
    "/{schedule_id}",
    operation_id="update_schedule",
    response_model=Schedule,
    responses=error_responses(401, 404, 413, 415, 422, 503),
)
async def update_schedule(
    schedule_id: str, body: ScheduleUpdate, services: ServicesDep, principal: OperatorDep
) -> dict[str, Any]:
    """Change any of a schedule's fields; its next run is computed anew."""
    row = await _owned(services, principal, schedule_id)
    changes = body.model_dump(exclude_unset=True)
    if "type" in changes or "params" in changes:
        task_type = changes.get("type", row["type"])
        params = changes.get("params", row["params"])
        changes["params"] = services.registry.validate_params(
            task_type, params, services.settings.max_params_bytes
        )
    return await schedules.update(services.store, row["id"], changes)


@router.delete(
    "/{schedule_id}",
    operation_id="delete_schedule",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 404, 503),
)
async def delete_schedule(schedule_id: str, services: ServicesDep, principal: OperatorDep) -> Response:
    row = await _owned(services, principal, schedule_id)
    await schedules.delete(services.store, row["id"])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{schedule_id}/pause",
    operation_id="pause_schedule",
    response_model=Schedule,
    responses=error_responses(401, 404, 415, 503),
)
async def pause_schedule(schedule_id: str, services: ServicesDep, principal: OperatorDep) -> dict[str, Any]:
    row = await _owned(services, principal, schedule_id)
    return await schedules.update(services.store, row["id"], {"paused": True})


@router.post(
    "/{schedule_id}/resume",
    operation_id="resume_schedule",
    response_model=Schedule,
    responses=error_responses(401, 404, 415, 503),
)
async def resume_schedule(schedule_id: str, services: ServicesDep, principal: OperatorDep) -> dict[str, Any]:
    """Resume firing: the next run is the next time due from now (missed ones are not made up)."""
    row = await _owned(services, principal, schedule_id)
    return await schedules.update(services.store, row["id"], {"paused": False})
