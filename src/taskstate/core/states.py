"""The task lifecycle as data: the transition table of CONTRACT §1 and the rules beside it.

Everything that asks "may a task go from A to B?", "what does entering B write?", "may
this call be made in state A?" or "where does a reset leave A?" reads this module; the
store, the routes, the sweeper and (through `GET /api/v2/states`) the UI ask it rather
than encode an answer of their own. Pure: no I/O, and nothing else of ours imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class State(StrEnum):
    """A task's lifecycle state."""

    QUEUED = "queued"  #: waiting for a worker
    PREPARING = "preparing"  #: claimed by a worker, being set up
    RUNNING = "running"  #: the job's code runs
    COLLECTING = "collecting"  #: the job returned; its result is being stored
    COMPLETED = "completed"  #: finished successfully (terminal)
    FAILED = "failed"  #: finished with an error (terminal)
    CANCELLED = "cancelled"  #: stopped on request (terminal)
    ORPHANED = "orphaned"  #: its worker was lost; about to be re-queued or failed
    SERVING = "serving"  #: a service job that is up and ready
    STOPPING = "stopping"  #: a service job shutting down gracefully


DESCRIPTIONS: Final[dict[State, str]] = {
    State.QUEUED: "waiting for a worker",
    State.PREPARING: "claimed by a worker, being set up",
    State.RUNNING: "the job's code runs",
    State.COLLECTING: "the job returned; its result is being stored",
    State.COMPLETED: "finished successfully",
    State.FAILED: "finished with an error",
    State.CANCELLED: "stopped on request",
    State.ORPHANED: "its worker was lost; about to be re-queued or failed",
    State.SERVING: "a service job that is up and ready",
    State.STOPPING: "a service job shutting down gracefully",
}

TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.QUEUED: frozenset({State.PREPARING, State.FAILED, State.CANCELLED}),
    State.PREPARING: frozenset({State.RUNNING, State.FAILED, State.CANCELLED, State.ORPHANED}),
    State.RUNNING: frozenset(
        {State.COLLECTING, State.FAILED, State.ORPHANED, State.SERVING, State.CANCELLED}
    ),
    State.COLLECTING: frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.ORPHANED}),
    State.SERVING: frozenset({State.STOPPING, State.FAILED, State.ORPHANED, State.CANCELLED}),
    State.STOPPING: frozenset({State.COMPLETED, State.FAILED}),
    State.ORPHANED: frozenset({State.QUEUED, State.FAILED}),
    State.COMPLETED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}

TERMINAL_STATES: Final[frozenset[State]] = frozenset(s for s, to in TRANSITIONS.items() if not to)
ACTIVE_STATES: Final[frozenset[State]] = frozenset(State) - TERMINAL_STATES

#: States in which a worker holds the task (what the sweeper must look after).
HELD_STATES: Final[frozenset[State]] = frozenset(
    {State.PREPARING, State.RUNNING, State.COLLECTING, State.SERVING, State.STOPPING}
)


@dataclass(frozen=True, slots=True)
class Entry:
    """What entering a state writes to the task besides `state` and `updated_at`."""

    starts: bool = False  #: `started_at`, the first time (a re-run keeps the first start)
    finishes: bool = False  #: `finished_at`; the task's pending questions expire
    full_progress: bool = False  #: `progress` = 100
    releases_worker: bool = False  #: `worker_id` cleared: no worker holds the task


ON_ENTRY: Final[dict[State, Entry]] = {
    State.PREPARING: Entry(starts=True),
    State.COMPLETED: Entry(finishes=True, full_progress=True),
    State.FAILED: Entry(finishes=True),
    State.CANCELLED: Entry(finishes=True),
    State.QUEUED: Entry(releases_worker=True),
}
_NOTHING: Final = Entry()


def on_entry(state: State) -> Entry:
    return ON_ENTRY.get(state, _NOTHING)


class Call(StrEnum):
    """What a client may ask of a task, besides reading it."""

    CANCEL = "cancel"  #: `POST /tasks/{id}/cancel`: to `cancelled` at once
    STOP = "stop"  #: `POST /tasks/{id}/stop`: a service to `stopping`, then `completed`
    RETRY = "retry"  #: `POST /tasks/{id}/retry`: a new task like this one


#: The states in which each call is allowed (elsewhere: 409 `invalid_transition`). A call
#: that asks for the state the task is in already (cancelling a cancelled task) answers it
#: again.
CALLS: Final[dict[Call, frozenset[State]]] = {
    Call.CANCEL: frozenset(s for s, to in TRANSITIONS.items() if State.CANCELLED in to) | {State.CANCELLED},
    Call.STOP: frozenset({State.SERVING, State.STOPPING}),
    Call.RETRY: frozenset({State.FAILED, State.CANCELLED}),
}

#: The state each call moves the task to (a retry makes a new task, which starts `queued`).
CALL_TARGETS: Final[dict[Call, State]] = {
    Call.CANCEL: State.CANCELLED,
    Call.STOP: State.STOPPING,
    Call.RETRY: State.QUEUED,
}

#: Emergency reset: where each active state ends: `cancelled` where the table allows it,
#: else `failed` (a service shutting down, an orphan about to be re-queued).
RESET_TO: Final[dict[State, State]] = {
    s: State.CANCELLED if State.CANCELLED in TRANSITIONS[s] else State.FAILED for s in ACTIVE_STATES
}


def is_terminal(state: str) -> bool:
    return State(state) in TERMINAL_STATES


def can_transition(from_state: str, to_state: str) -> bool:
    return State(to_state) in TRANSITIONS[State(from_state)]


def allows(call: Call, state: str) -> bool:
    return State(state) in CALLS[call]


def published() -> dict[str, object]:
    """The table and its rules as `GET /api/v2/states` answers them."""
    return {
        "states": [
            {"name": s.value, "description": DESCRIPTIONS[s], "terminal": s in TERMINAL_STATES} for s in State
        ],
        "transitions": {s.value: sorted(t.value for t in TRANSITIONS[s]) for s in State},
        "calls": {c.value: sorted(s.value for s in CALLS[c]) for c in Call},
        "reset": {s.value: RESET_TO[s].value for s in State if s in RESET_TO},
    }
