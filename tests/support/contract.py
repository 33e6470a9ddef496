"""CONTRACT §1 as the tests know it, and the checks that transition rows obey it.

The table is copied from the contract, literally, and on purpose imports nothing from
states.py: a change to either side must fail `tests/test_states.py`.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

#: CONTRACT §1, "States and the transition table", row by row.
CONTRACT_STATES = [
    "queued",
    "preparing",
    "running",
    "collecting",
    "completed",
    "failed",
    "cancelled",
    "orphaned",
    "serving",
    "stopping",
]
CONTRACT_TABLE: dict[str, set[str]] = {
    "queued": {"preparing", "failed", "cancelled"},
    "preparing": {"running", "failed", "cancelled", "orphaned"},
    "running": {"collecting", "failed", "orphaned", "serving", "cancelled"},
    "collecting": {"completed", "failed", "cancelled", "orphaned"},
    "serving": {"stopping", "failed", "orphaned", "cancelled"},
    "stopping": {"completed", "failed"},
    "orphaned": {"queued", "failed"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}
CONTRACT_TERMINAL = {"completed", "failed", "cancelled"}

ALL_PAIRS = list(itertools.product(CONTRACT_STATES, repeat=2))
EDGES = [(a, b) for a, b in ALL_PAIRS if b in CONTRACT_TABLE[a]]
NON_EDGES = [(a, b) for a, b in ALL_PAIRS if b not in CONTRACT_TABLE[a]]


def assert_seqs_gap_free(rows: list[dict[str, Any]], latest: int) -> None:
    """Every seq from 1 to the newest, each once, in order."""
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(1, len(seqs) + 1)), "seq has gaps, repeats or does not start at 1"
    assert latest == (seqs[-1] if seqs else 0), "latest_seq() disagrees with the transitions table"


def assert_valid_paths(rows: list[dict[str, Any]], states: dict[str, str]) -> dict[str, list[str]]:
    """Each task's rows: null->queued first, then table edges that chain, ending in its state."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_task[row["task_id"]].append(row)
    paths: dict[str, list[str]] = {}
    for task_id, state in states.items():
        task_rows = by_task.get(task_id, [])
        assert task_rows, f"task {task_id} has no transition rows"
        seqs = [r["seq"] for r in task_rows]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        first = task_rows[0]
        assert (first["from_state"], first["to_state"]) == (None, "queued"), f"{task_id}: birth {first}"
        path = ["queued"]
        for row in task_rows[1:]:
            assert row["from_state"] is not None, f"{task_id}: a second birth row {row}"
            assert row["from_state"] == path[-1], f"{task_id}: row {row} does not follow {path}"
            assert row["to_state"] in CONTRACT_TABLE[row["from_state"]], f"{task_id}: not an edge: {row}"
            path.append(row["to_state"])
        terminal_at = [i for i, s in enumerate(path) if s in CONTRACT_TERMINAL]
        if terminal_at:
            assert terminal_at[0] == len(path) - 1, f"{task_id} left a terminal state: {path}"
        assert path[-1] == state, f"{task_id}: rows end in {path[-1]} but the task is {state}"
        paths[task_id] = path
    assert set(by_task) <= set(states), "transition rows of tasks that do not exist"
    return paths
