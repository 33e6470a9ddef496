"""The transition table of CONTRACT §1, checked pair by pair against `taskstate.states`.

The table (in `tests/support/contract.py`) is copied from the contract, literally, and on
purpose does not import anything from states.py: a change to either side must fail here.
"""

from __future__ import annotations

import pytest

from taskstate.core.errors import InvalidTransition
from taskstate.core.statements import check_transition
from taskstate.core.states import State, can_transition, is_terminal
from tests.support.contract import (
    ALL_PAIRS,
    CONTRACT_STATES,
    CONTRACT_TABLE,
    CONTRACT_TERMINAL,
    EDGES,
    NON_EDGES,
)


def test_the_contract_table_is_well_formed() -> None:
    # Guards against a typo in the literal table (tests/support/contract.py).
    assert len(CONTRACT_STATES) == 10
    assert set(CONTRACT_TABLE) == set(CONTRACT_STATES)
    for to in CONTRACT_TABLE.values():
        assert to <= set(CONTRACT_STATES)
    assert len(ALL_PAIRS) == 100
    assert len(EDGES) == 3 + 4 + 5 + 4 + 4 + 2 + 2


def test_the_state_enum_is_exactly_the_contract_states() -> None:
    assert sorted(s.value for s in State) == sorted(CONTRACT_STATES)


@pytest.mark.parametrize(("from_state", "to_state"), ALL_PAIRS)
def test_can_transition_matches_the_contract(from_state: str, to_state: str) -> None:
    expected = to_state in CONTRACT_TABLE[from_state]
    assert can_transition(from_state, to_state) is expected
    # The enum members answer the same as their string values.
    assert can_transition(State(from_state), State(to_state)) is expected


@pytest.mark.parametrize(("from_state", "to_state"), EDGES)
def test_check_transition_accepts_every_edge(from_state: str, to_state: str) -> None:
    check_transition(from_state, to_state)  # must not raise


@pytest.mark.parametrize(("from_state", "to_state"), NON_EDGES)
def test_check_transition_rejects_every_non_edge(from_state: str, to_state: str) -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(from_state, to_state)
    exc = info.value
    assert exc.from_state == from_state
    assert exc.to_state == to_state
    body = exc.to_body()
    assert body["error"] == "invalid_transition"
    assert body["from"] == from_state
    assert body["to"] == to_state
    assert exc.status == 409


def test_no_state_may_go_to_itself() -> None:
    # A request for the current state is a no-op in the store, never an edge of the table.
    for state in CONTRACT_STATES:
        assert not can_transition(state, state)


@pytest.mark.parametrize("terminal", sorted(CONTRACT_TERMINAL))
def test_terminal_states_have_no_edges(terminal: str) -> None:
    for to_state in CONTRACT_STATES:
        assert not can_transition(terminal, to_state)
        with pytest.raises(InvalidTransition):
            check_transition(terminal, to_state)


@pytest.mark.parametrize("state", CONTRACT_STATES)
def test_is_terminal_is_exactly_completed_failed_cancelled(state: str) -> None:
    assert is_terminal(state) is (state in CONTRACT_TERMINAL)
    assert is_terminal(State(state)) is (state in CONTRACT_TERMINAL)


@pytest.mark.parametrize("state", sorted(set(CONTRACT_STATES) - CONTRACT_TERMINAL))
def test_every_active_state_can_end(state: str) -> None:
    # Every non-terminal state has at least one way out, and `failed` is always one of them.
    assert any(can_transition(state, t) for t in CONTRACT_TERMINAL)
    assert can_transition(state, "failed")


def test_every_state_is_reachable_from_queued() -> None:
    seen = {"queued"}
    frontier = ["queued"]
    while frontier:
        current = frontier.pop()
        for to_state in CONTRACT_STATES:
            if can_transition(current, to_state) and to_state not in seen:
                seen.add(to_state)
                frontier.append(to_state)
    assert seen == set(CONTRACT_STATES)


@pytest.mark.parametrize("bad", ["", "QUEUED", "done", "canceled"])
def test_unknown_states_never_get_an_edge(bad: str) -> None:
    # An unknown state is refused: either an error, or no edge, never an edge.
    for known in CONTRACT_STATES:
        for pair in ((bad, known), (known, bad)):
            try:
                allowed = can_transition(*pair)
            except ValueError:
                continue
            assert allowed is False, pair
