"""The task lifecycle: the transition table of CONTRACT §1, as data.

Everything that asks "may a task go from A to B?" asks this module; nothing
else encodes the table. Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from taskstate.core.errors import InvalidTransition

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "InvalidTransition",
    "State",
    "can_transition",
    "check_transition",
    "is_terminal",
]


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


def is_terminal(state: str) -> bool:
    return State(state) in TERMINAL_STATES


def can_transition(from_state: str, to_state: str) -> bool:
    return State(to_state) in TRANSITIONS[State(from_state)]


def check_transition(from_state: str, to_state: str) -> None:
    """Raise `InvalidTransition` unless the table has the edge."""
    if not can_transition(from_state, to_state):
        raise InvalidTransition(from_state, to_state)
