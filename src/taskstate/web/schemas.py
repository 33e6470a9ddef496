"""Wire models: what the HTTP API accepts and answers (CONTRACT §2).

Named component schemas with enums, so that generated clients get real types. Inputs forbid unknown
fields and take integers strictly: hostile input gets a 422 naming the field, never a coercion.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.types import Strict

from taskstate.core.states import Call, State
from taskstate.runtime.registry import TaskKind

StrictInt = Annotated[int, Strict()]
#: No U+0000: PostgreSQL cannot store it in text.
NO_NUL = r"^[^\x00]*$"
ShortText = Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)]
Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
#: A task id in a request (checked as a UUID where it is used).
TaskRef = Annotated[str, Strict(), StringConstraints(max_length=64)]

#: Any JSON value (a job's result, a question's context or answer, a service's info),
#: documented as the union it is: generated clients type it instead of leaving it untyped.
JsonValue = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "object", "additionalProperties": True},
                {"type": "array", "items": {}},
                {"type": "string"},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]

MAX_BATCH = 500
MAX_PAGE = 500


class Trigger(StrEnum):
    """What started a task (the seed's "job type")."""

    MANUAL = "manual"  #: a person, from the UI or the CLI
    API = "api"  #: a program, through the API
    SCHEDULED = "scheduled"  #: a scheduler


class TaskCreate(BaseModel):
    """A request to start a task."""

    model_config = ConfigDict(extra="forbid")

    type: Text200
    params: dict[str, Any] | None = None
    name: Text200 | None = None
    priority: Annotated[StrictInt, Field(ge=-1_000_000, le=1_000_000)] = 0
    run_at: datetime | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=30 * 24 * 3600)] | None = None
    max_attempts: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    trigger: Trigger = Trigger.API
    trigger_source: ShortText | None = None
    idempotency_key: Text200 | None = None
    depends_on: Annotated[list[TaskRef], Field(max_length=MAX_BATCH)] = Field(
        default_factory=list,
        description="Ids of tasks that must complete before this one is claimed (CONTRACT §6).",
    )
    requires_approval: bool = Field(
        False, description="Hold the task until a person answers its `approval` question: approve or reject."
    )


class BatchTaskCreate(TaskCreate):
    """A task in a batch: `depends_on` may also name tasks of the same batch by index."""

    depends_on: Annotated[list[TaskRef | StrictInt], Field(max_length=MAX_BATCH)] = Field(  # type: ignore[assignment]
        default_factory=list,
        description="Ids of earlier tasks, or indexes (0-based) of tasks in the same batch.",
    )


class TaskBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: Annotated[list[BatchTaskCreate], Field(min_length=1, max_length=MAX_BATCH)]


class PendingQuestion(BaseModel):
    """A question a job asked and waits on."""

    id: str
    question: str
    choices: list[str] | None = None
    context: JsonValue = None
    asked_at: datetime
    timeout_at: datetime | None = None


class QuestionPublic(PendingQuestion):
    """A question, in the inbox of every pending question."""

    task_id: str
    task_name: str
    task_type: str
    status: Literal["pending", "answered", "expired"]
    answer: JsonValue = None
    answered_at: datetime | None = None


class QuestionList(BaseModel):
    items: list[QuestionPublic]


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: JsonValue = Field(
        description="One of the question's `choices`, if it has any; else any JSON value."
    )


class LogLine(BaseModel):
    seq: int
    at: datetime
    level: Literal["debug", "info", "warning", "error", "critical"]
    message: str


class LogPage(BaseModel):
    items: list[LogLine]
    next_after: int = Field(description="Pass as `after` to read on.")


class TaskPublic(BaseModel):
    """A task as clients see it."""

    id: str
    type: str
    name: str
    state: State
    is_terminal: bool
    progress: float
    phase: str | None
    message: str | None
    items_processed: int
    items_failed: int
    params: dict[str, Any]
    result: JsonValue = Field(description="What the job returned: any JSON value.")
    error: str | None
    error_type: str | None
    reason: str | None = Field(description="The reason recorded with the latest transition.")
    priority: int
    attempt: int
    max_attempts: int
    trigger: Trigger
    trigger_source: str | None
    idempotency_key: str | None
    run_at: datetime
    timeout_seconds: float | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None = Field(
        description="finished_at - started_at once terminal; time so far while active."
    )
    worker_id: str | None
    heartbeat_at: datetime | None
    has_checkpoint: bool
    restoration_count: int
    last_restored_at: datetime | None
    restoration_source: str | None
    restoration_decision: str | None = Field(
        description="How a restored run went on: `code: text`, the code one of proceed, checkpoint, "
        "fresh, manual (a person decided through a question), failed."
    )
    restoration_code: Literal["proceed", "checkpoint", "fresh", "manual", "failed"] | None = Field(
        description="The code of `restoration_decision`."
    )
    pending_questions: list[PendingQuestion]
    waiting_for_input: bool
    retry_of: str | None
    endpoint: str | None = Field(description="Where a serving service job can be reached.")
    service_info: JsonValue = Field(description="What a service job said about itself when it came up.")
    log_lines: int = Field(description="How many log lines the task has written (seq of the last).")
    execution_summary: dict[str, Any] | None = Field(
        description="Run report: duration, attempts, items processed and failed."
    )
    phase_results: dict[str, float] | None = Field(description="Run report: seconds spent in each state.")
    system_info: dict[str, Any] | None = Field(description="Run report: host, pid, versions.")
    owner: str | None = Field(description="The name of the API token that created it (auth on).")
    parent_id: str | None = Field(description="The task whose job spawned this one (CONTRACT §6).")
    root_id: str = Field(description="The top of this task's tree: its own id when it has no parent.")
    depends_on: list[str] = Field(description="Tasks that must complete before this one is claimed.")
    waiting_for: list[str] = Field(description="While its job waits: the child tasks still open.")
    requires_approval: bool = Field(description="Created behind an approval gate (its `approval` question).")
    blocked: bool = Field(
        description="Queued but not claimable yet: a dependency is unfinished, or the approval pending."
    )


class TaskDetail(TaskPublic):
    """A task read by itself: what lists and events show, and its traceback."""

    traceback: str | None = Field(
        description="A failed job's formatted traceback (the exception it raised, or where it was "
        "when it timed out), at most 16,384 characters: a longer one keeps its first 4,096 and its "
        "last characters around a `[... N characters of the traceback cut ...]` line. Null "
        "otherwise; only in `GET /tasks/{id}`, not in lists or events."
    )


class TaskPage(BaseModel):
    items: list[TaskPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")
    total: int = Field(
        description="How many tasks match the filters, over all pages: exact up to 10,000; "
        "above that, on PostgreSQL, the planner's estimate (`total_is_estimate`)."
    )
    total_is_estimate: bool = Field(
        description="`total` is PostgreSQL's estimate, not a count: more than 10,000 tasks match "
        "and counting them exactly would read every one on every page."
    )


class TaskList(BaseModel):
    items: list[TaskPublic]


class ActiveTaskList(TaskList):
    seq: int = Field(
        description="The newest transition these tasks include: open the WebSocket with `since` = seq."
    )


class ClientConfig(BaseModel):
    """What a client (the UI) should know of the server's configuration."""

    task_polling_frequency: int = Field(description="ms between polls while the WebSocket is down.")
    auth: Literal["off", "tokens"]
    version: str


class ScheduleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)] | None = Field(
        None,
        description="A cron expression (5 fields), in `timezone`. Exactly one of cron and interval_seconds.",
    )
    interval_seconds: Annotated[float, Field(ge=1, le=366 * 24 * 3600)] | None = None
    timezone: ShortText = Field("UTC", description="An IANA timezone, e.g. Europe/Riga.")
    overlap: Literal["skip", "queue", "cancel_previous"] = Field(
        "skip",
        description="A firing while the previous firing's task is active: skip, queue, cancel it first.",
    )
    catch_up: Literal["none", "latest", "all"] = Field(
        "latest", description="Firings missed while no instance ran: none, the latest, all (at most 100)."
    )
    paused: bool = False


class ScheduleCreate(ScheduleFields):
    type: Text200
    params: dict[str, Any] | None = None
    name: Text200 | None = None


class ScheduleUpdate(BaseModel):
    """Any of a schedule's fields."""

    model_config = ConfigDict(extra="forbid")

    type: Text200 | None = None
    params: dict[str, Any] | None = None
    name: Text200 | None = None
    cron: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)] | None = None
    interval_seconds: Annotated[float, Field(ge=1, le=366 * 24 * 3600)] | None = None
    timezone: ShortText | None = None
    overlap: Literal["skip", "queue", "cancel_previous"] | None = None
    catch_up: Literal["none", "latest", "all"] | None = None
    paused: bool | None = None


class Schedule(BaseModel):
    id: str
    name: str
    type: str
    params: dict[str, Any]
    cron: str | None
    interval_seconds: float | None
    timezone: str
    overlap: Literal["skip", "queue", "cancel_previous"]
    catch_up: Literal["none", "latest", "all"]
    paused: bool
    next_run_at: datetime | None = Field(description="When it fires next (none while paused).")
    last_fired_at: datetime | None
    last_task_id: str | None = Field(description="The task its latest firing created.")
    owner: str | None
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    items: list[Schedule]


class StateInfo(BaseModel):
    name: State
    description: str
    terminal: bool


class Lifecycle(BaseModel):
    """The transition table (CONTRACT §1) and the rules declared beside it, as the server
    applies them: clients read this instead of encoding the table themselves."""

    states: list[StateInfo]
    transitions: dict[State, list[State]] = Field(description="For each state, the states it may go to.")
    calls: dict[Call, list[State]] = Field(
        description="For each call (`cancel`, `stop`, `retry`), the states in which it is allowed; "
        "in any other the call answers 409 `invalid_transition`."
    )
    reset: dict[State, State] = Field(
        description="Emergency reset: the state in which it leaves a task in each active state."
    )


class TransitionPublic(BaseModel):
    seq: int
    task_id: str
    from_state: State | None
    to_state: State
    at: datetime
    reason: str | None
    actor: str


class TransitionList(BaseModel):
    items: list[TransitionPublic]


class CleanupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than_days: Annotated[float, Field(ge=0, le=100_000)] | None = Field(
        None, description="Defaults to TASK_HISTORY_RETENTION_DAYS."
    )


class CleanupResult(BaseModel):
    deleted: int


class ResetResult(BaseModel):
    reset: int


class TaskTypePublic(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]
    kind: TaskKind


class TaskTypeList(BaseModel):
    items: list[TaskTypePublic]


class WorkerState(StrEnum):
    RUNNING = "running"  #: heartbeating
    STOPPED = "stopped"  #: shut down gracefully
    LOST = "lost"  #: no heartbeat for longer than TASKSTATE_ORPHAN_AFTER_SECONDS


class WorkerPublic(BaseModel):
    """A taskstate instance (its supervisor)."""

    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    state: WorkerState
    tasks: list[str] = Field(description="Ids of the non-terminal tasks it holds.")
    slots: int | None = Field(
        description="How many jobs it runs at once (its MAX_CONCURRENT_TASKS setting); null for an "
        "instance registered before this field existed."
    )
    slots_used: int = Field(
        description="How many of its slots its jobs take now: the tasks it holds in preparing, running, "
        "collecting, serving or stopping, less those waiting for their children (which give their slot "
        "up meanwhile), as of their last progress write. 0 for a stopped or lost instance."
    )


class WorkerList(BaseModel):
    items: list[WorkerPublic]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\w.@-]+$")]
    role: Literal["viewer", "operator", "admin"]


class TokenPublic(BaseModel):
    id: str
    name: str
    role: Literal["viewer", "operator", "admin"]
    created_at: datetime
    revoked: bool


class TokenCreated(TokenPublic):
    token: str = Field(description="The token itself: shown this once, stored only as a hash.")


class TokenList(BaseModel):
    items: list[TokenPublic]


class HealthStatus(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """Every error answer: a stable `error` code and a human `detail`."""

    model_config = ConfigDict(extra="allow")

    error: str
    detail: str


class ThroughputBucket(BaseModel):
    """Tasks that finished in one bucket `[start, start + interval)`, by end state."""

    start: datetime
    completed: int
    failed: int
    cancelled: int


class TypeOutcomes(BaseModel):
    """How the tasks of one type that finished in the window ended."""

    type: str
    completed: int
    failed: int
    cancelled: int


class TypeDurations(BaseModel):
    """Nearest-rank percentiles of `finished_at - started_at`, in seconds, over the tasks of
    one type that finished in the window after starting (`count` of them)."""

    type: str
    count: int
    p50_seconds: float
    p95_seconds: float
    p99_seconds: float


class QueueBucket(BaseModel):
    """The queue in one bucket: time in the queue runs from `created_at` to the first start
    (or to the end, for a task cancelled while queued)."""

    start: datetime
    depth: int = Field(description="Tasks in the queue at the bucket's end.")
    arrived: int = Field(description="Tasks created in the bucket.")
    started: int = Field(description="Tasks that started in the bucket.")
    wait_avg_seconds: float | None = Field(description="Mean wait of the tasks that started in it.")
    wait_max_seconds: float | None = Field(description="Longest wait of the tasks that started in it.")


class Insights(BaseModel):
    """Aggregates of one window `[since, until)`, cut into buckets of `interval_seconds`
    (aligned to multiples of it since the Unix epoch)."""

    since: datetime
    until: datetime
    interval_seconds: int
    type: str | None = Field(description="The type filter, if any.")
    throughput: list[ThroughputBucket]
    by_type: list[TypeOutcomes]
    durations: list[TypeDurations]
    queue: list[QueueBucket]
