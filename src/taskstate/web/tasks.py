"""Routes for tasks: create, read, history, transitions, cancel, retry, cleanup."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status
from opentelemetry import trace

from taskstate.core import questions
from taskstate.core.creation import NewTask
from taskstate.core.errors import (
    IdempotencyConflict,
    InvalidDependency,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
    TaskstateError,
    ValidationFailed,
)
from taskstate.core.maintenance import delete_finished_before, retention_cutoff
from taskstate.core.payloads import task_detail_payload, task_payload
from taskstate.core.reads import HistoryFilter
from taskstate.core.states import CALL_TARGETS, Call, State, allows
from taskstate.core.store import Outcome
from taskstate.web.auth import Principal
from taskstate.web.deps import AdminDep, OperatorDep, ServicesDep, ViewerDep
from taskstate.web.error_responses import error_responses
from taskstate.web.schemas import (
    MAX_PAGE,
    NO_NUL,
    ActiveTaskList,
    AnswerRequest,
    CleanupRequest,
    CleanupResult,
    LogPage,
    TaskBatchCreate,
    TaskCreate,
    TaskDetail,
    TaskList,
    TaskPage,
    TaskPublic,
    TransitionList,
    Trigger,
)

router = APIRouter(prefix="/api/v2/tasks", tags=["tasks"])

#: What the start of a task id (a UUID) can look like.
ID_PREFIX = r"^[0-9a-fA-F][0-9a-fA-F-]*$"

IDEMPOTENCY_CONFLICT = error_responses(
    409,
    described={
        409: "The `idempotency_key` was used for another type or other params (`idempotency_conflict`)."
    },
)


def checked_id(task_id: str) -> str:
    """Task ids are UUIDs; anything else cannot name a task."""
    try:
        return str(uuid.UUID(task_id))
    except ValueError:
        raise NotFound(f"no task with id {task_id!r}") from None


async def owned_task(services: ServicesDep, principal: Principal, task_id: str) -> Mapping[Any, Any]:
    """The task's row, if it exists and `principal` may see it (404, 403 otherwise)."""
    row = await services.reads.get_task_row(checked_id(task_id))
    if row is None:
        raise NotFound(f"no task with id {task_id!r}")
    principal.check_owner(row["owner"])
    return row


def _aware(value: datetime | None, field: str) -> datetime | None:
    """The instant in UTC; one that does not fit in UTC (year 0 or 10000) is a 422."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(f"{field}: {value.isoformat()} is out of range", field=field) from None


def new_task(
    services: ServicesDep,
    body: TaskCreate,
    *,
    owner: str | None,
    retry_of: str | None = None,
    batch: Sequence[NewTask] = (),
) -> NewTask:
    """A validated request to create a task; `batch`: the tasks of the same request before it,
    which `depends_on` may name by index (indexes of later tasks are resolved by the caller)."""
    params = services.registry.validate_params(body.type, body.params, services.settings.max_params_bytes)
    return NewTask(
        depends_on=[_dependency(ref, batch) for ref in body.depends_on],
        requires_approval=body.requires_approval,
        type=body.type,
        params=params,
        name=body.name or body.type,
        priority=body.priority,
        run_at=_aware(body.run_at, "run_at"),
        timeout_seconds=body.timeout_seconds,
        max_attempts=body.max_attempts,
        trigger=body.trigger.value,
        trigger_source=body.trigger_source,
        idempotency_key=body.idempotency_key,
        retry_of=retry_of,
        owner=owner,
    )


@router.post(
    "",
    operation_id="create_task",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskPublic,
    responses={
        200: {
            "model": TaskPublic,
            "description": "The task first created with this idempotency key.",
        },
        **error_responses(401, 413, 415, 422, 503),
        **IDEMPOTENCY_CONFLICT,
    },
)
async def create_task(
    body: TaskCreate, services: ServicesDep, principal: OperatorDep, response: Response
) -> dict[str, Any]:
    """Start a task. The same `idempotency_key` again answers the first task, with 200; the
    same key for another type or other params is a 409 (`idempotency_conflict`). With auth on,
    keys are the owner's own."""
    new = new_task(services, body, owner=principal.name)
    [result] = await services.store.create_tasks([new], actor="api")
    # For tracing: the request's span names the task its job's span will name (a no-op
    # on the non-recording span there is while tracing is off).
    trace.get_current_span().set_attribute("taskstate.task.id", result.task["id"])
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return result.task


@router.post(
    "/batch",
    operation_id="create_tasks_batch",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskList,
    responses={**error_responses(401, 413, 415, 422, 503), **IDEMPOTENCY_CONFLICT},
)
async def create_tasks_batch(
    body: TaskBatchCreate, services: ServicesDep, principal: OperatorDep
) -> dict[str, Any]:
    """Create up to 500 tasks in one transaction; one invalid body (or idempotency conflict)
    fails the batch, naming its index."""
    # Ids first, so that `depends_on` may name a later task of the batch by its index too.
    ids = [str(uuid.uuid4()) for _ in body.tasks]
    placeholders = [NewTask(type="", params={}, name="", id=task_id) for task_id in ids]
    items = []
    for index, task in enumerate(body.tasks):
        try:
            item = new_task(services, task, owner=principal.name, batch=placeholders)
        except TaskstateError as exc:
            raise _at_index(exc, index) from None
        item.id = ids[index]
        items.append(item)
    try:
        results = await services.store.create_tasks(items, actor="api")
    except (IdempotencyConflict, InvalidDependency) as exc:
        raise _at_index(exc, exc.index) from None
    return {"items": [r.task for r in results]}


def _dependency(ref: str | int, batch: Sequence[NewTask]) -> str:
    """A task id, from an id or (in a batch) the index of a task of the same batch."""
    if isinstance(ref, int):
        if not 0 <= ref < len(batch):
            raise ValidationFailed(f"depends_on: no task at index {ref} in this batch", field="depends_on")
        return batch[ref].id
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        raise ValidationFailed(f"depends_on: {ref[:64]!r} is not a task id", field="depends_on") from None


def _optional_id(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationFailed(f"{field} must be a task id", field=field) from None


def _at_index(exc: TaskstateError, index: int) -> TaskstateError:
    """The error of one task of a batch, naming which."""
    exc.extra["index"] = index
    exc.detail = f"tasks[{index}]: {exc.detail}"
    return exc


@router.get(
    "",
    operation_id="list_tasks",
    response_model=TaskPage,
    responses=error_responses(401, 422, 503),
)
async def list_tasks(
    services: ServicesDep,
    principal: ViewerDep,
    state: Annotated[list[State] | None, Query(description="Repeatable.")] = None,
    type: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    trigger: Trigger | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Search in task names.")
    ] = None,
    trigger_source: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    parent_id: Annotated[str | None, Query(max_length=64, description="Children of this task.")] = None,
    root_id: Annotated[str | None, Query(max_length=64, description="The whole tree of this task.")] = None,
    id_prefix: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=36,
            pattern=ID_PREFIX,
            description="Only tasks whose id starts with this (a hex digit, then hex digits and "
            "hyphens, any case): "
            "how the command line finds the task of a short id. An index range, cheap at any size.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """History, newest first, with filters and a cursor."""
    flt = HistoryFilter(
        states=[s.value for s in state or []],
        type=type,
        trigger=trigger.value if trigger else None,
        created_after=_aware(created_after, "created_after"),
        created_before=_aware(created_before, "created_before"),
        q=q,
        owner=principal.owner_filter,
        trigger_source=trigger_source,
        parent_id=_optional_id(parent_id, "parent_id"),
        root_id=_optional_id(root_id, "root_id"),
        id_prefix=id_prefix.lower() if id_prefix else None,
    )
    page = await services.reads.list_tasks(flt, limit=limit, cursor=cursor)
    return {
        "items": page.items,
        "next_cursor": page.next_cursor,
        "total": page.total,
        "total_is_estimate": page.total_is_estimate,
    }


@router.get(
    "/active",
    operation_id="list_active_tasks",
    response_model=ActiveTaskList,
    responses=error_responses(401, 503),
)
async def list_active_tasks(services: ServicesDep, principal: ViewerDep) -> dict[str, Any]:
    """Every task not in a terminal state, oldest first: what the UI restores on page load.

    `seq` is the newest transition the list includes (read in one snapshot): a client that
    opens the WebSocket with `since=seq` misses nothing and is sent nothing twice.
    """
    seq, items = await services.reads.snapshot()
    owner = principal.owner_filter
    return {"items": [t for t in items if owner is None or t["owner"] == owner], "seq": seq}


@router.post(
    "/cleanup",
    operation_id="cleanup_tasks",
    response_model=CleanupResult,
    responses=error_responses(401, 413, 415, 422, 503),
)
async def cleanup_tasks(
    services: ServicesDep, _admin: AdminDep, body: Annotated[CleanupRequest | None, Body()] = None
) -> dict[str, Any]:
    """Delete terminal tasks (and their transitions) that finished more than `older_than_days` ago."""
    days = body.older_than_days if body and body.older_than_days is not None else None
    if days is None:
        days = services.settings.task_history_retention_days
    deleted = await delete_finished_before(services.store, retention_cutoff(days))
    return {"deleted": deleted}


@router.get(
    "/{task_id}",
    operation_id="get_task",
    response_model=TaskDetail,
    responses=error_responses(401, 404, 503),
)
async def get_task(task_id: str, services: ServicesDep, principal: ViewerDep) -> dict[str, Any]:
    """The task, with the traceback of a failed job (which lists and events leave out)."""
    return task_detail_payload(await owned_task(services, principal, task_id))


@router.get(
    "/{task_id}/transitions",
    operation_id="list_task_transitions",
    response_model=TransitionList,
    responses=error_responses(401, 404, 503),
)
async def list_task_transitions(task_id: str, services: ServicesDep, principal: ViewerDep) -> dict[str, Any]:
    """The task's transition rows, oldest first."""
    row = await owned_task(services, principal, task_id)
    return {"items": await services.reads.transitions_of(row["id"])}


@router.post(
    "/{task_id}/cancel",
    operation_id="cancel_task",
    response_model=TaskPublic,
    responses=error_responses(401, 404, 409, 415, 503),
)
async def cancel_task(task_id: str, services: ServicesDep, principal: OperatorDep) -> dict[str, Any]:
    """Cancel a non-terminal task at once; its job is told, and stopped hard after the grace period.

    Cancelling a cancelled task answers it again; any other terminal task is a 409.
    """
    return await _call(services, principal, task_id, Call.CANCEL)


_REFUSALS = {
    Call.CANCEL: "a {state} task cannot be cancelled",
    Call.STOP: "only a serving task can be stopped, not a {state} one",
}


async def _call(services: ServicesDep, principal: Principal, task_id: str, call: Call) -> dict[str, Any]:
    """A call that moves the task (cancel, stop), if `states.CALLS` allows it in its state.

    The task is read once, to check its owner and the rule; the answer is the task as the
    transition left it (or as read, when it was in the state asked for already).
    """
    row = await owned_task(services, principal, task_id)
    to = CALL_TARGETS[call]
    if not allows(call, row["state"]):
        raise InvalidTransition(row["state"], to.value, _REFUSALS[call].format(state=row["state"]))
    result = await services.store.transition(row["id"], to, reason="user", actor="api")
    if result.outcome is Outcome.REFUSED:  # it ended meanwhile
        raise InvalidTransition(result.from_state, to.value)
    return result.task if result.applied else task_payload(row)


@router.post(
    "/{task_id}/stop",
    operation_id="stop_task",
    response_model=TaskPublic,
    responses=error_responses(401, 404, 409, 415, 503),
)
async def stop_task(task_id: str, services: ServicesDep, principal: OperatorDep) -> dict[str, Any]:
    """Ask a `serving` service job to shut down: `stopping`, then `completed` once it has.

    Stopping a task that is stopping already answers it again; any other state is a 409.
    """
    return await _call(services, principal, task_id, Call.STOP)


@router.post(
    "/{task_id}/questions/{question_id}/answer",
    operation_id="answer_question",
    response_model=TaskPublic,
    responses=error_responses(
        401,
        404,
        409,
        413,
        415,
        422,
        503,
        described={
            409: "The question was answered or expired already (`already_answered`), or the task "
            "has ended (`task_finished`).",
            413: "The answer is over TASKSTATE_MAX_PARAMS_BYTES (`payload_too_large`).",
        },
    ),
)
async def answer_question(
    task_id: str, question_id: str, body: AnswerRequest, services: ServicesDep, principal: OperatorDep
) -> dict[str, Any]:
    """Answer a question the task's job asked. 409 if it was answered already or the task has ended;
    422 if the question has `choices` and the answer is not one of them."""
    task_id = (await owned_task(services, principal, task_id))["id"]
    try:
        question_id = str(uuid.UUID(question_id))
    except ValueError:
        raise NotFound(f"task {task_id} has no question {question_id!r}") from None
    size = len(json.dumps(body.answer).encode())
    if size > services.settings.max_params_bytes:
        raise PayloadTooLarge(
            f"the answer is {size} bytes; the limit is {services.settings.max_params_bytes}"
        )
    await questions.answer(services.store, task_id, question_id, body.answer, by="api")
    return await services.reads.get_task(task_id)


@router.get(
    "/{task_id}/logs",
    operation_id="list_task_logs",
    response_model=LogPage,
    responses=error_responses(401, 404, 422, 503),
)
async def list_task_logs(
    task_id: str,
    services: ServicesDep,
    principal: ViewerDep,
    after: Annotated[int, Query(ge=0, le=2**31, description="Only lines with a greater seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    """The task's log lines after line `after`, oldest first."""
    row = await owned_task(services, principal, task_id)
    items = await services.reads.logs_of(row["id"], after=after, limit=limit)
    return {"items": items, "next_after": items[-1]["seq"] if items else after}


@router.post(
    "/{task_id}/retry",
    operation_id="retry_task",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskPublic,
    responses=error_responses(
        401,
        404,
        409,
        415,
        422,
        503,
        described={
            409: "Only a failed or cancelled task can be retried (`invalid_transition`).",
            422: "The task's type is no longer registered, or its params no longer fit the "
            "type's schema (`validation_error`).",
        },
    ),
)
async def retry_task(task_id: str, services: ServicesDep, principal: OperatorDep) -> dict[str, Any]:
    """A new task with the same type and params as a failed or cancelled one (`retry_of` links them)."""
    row = await owned_task(services, principal, task_id)
    if not allows(Call.RETRY, row["state"]):
        raise InvalidTransition(
            row["state"],
            State.QUEUED.value,
            f"only a failed or cancelled task can be retried, not a {row['state']} one",
        )
    if row["type"] not in services.registry:
        raise ValidationFailed(f"job type {row['type']!r} is no longer registered")
    body = TaskCreate(
        type=row["type"],
        params=row["params"],
        name=row["name"],
        priority=row["priority"],
        max_attempts=row["max_attempts"],
        timeout_seconds=row["timeout_seconds"],
        trigger=Trigger(row["trigger"]),
        trigger_source=row["trigger_source"],
    )
    new = new_task(services, body, owner=principal.name, retry_of=row["id"])
    new.restoration_source = "manual"
    [result] = await services.store.create_tasks([new], actor="api")
    return result.task
