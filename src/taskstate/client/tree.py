"""`taskstate tree ID`: a task's workflow (CONTRACT §6), its root and every task under it,
as an indented tree with each task's state and progress and what it waits for.

With `--watch` it follows the tree live (`/api/v2/events?root_id=`) until the root ends: on
a terminal the tree is redrawn in place; elsewhere each transition is a line, and the tree
is printed again at the end; with `--json`, every event is a line of JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from typing import Any

from taskstate.client.command_line import (
    EXIT_OK,
    AddCommand,
    add_reconnect_option,
    outcome,
    run_with_client,
)
from taskstate.client.formatting import clip, print_json, progress_bar
from taskstate.client.http import Client, Json
from taskstate.client.ids import resolve_task_id
from taskstate.client.watch import PROGRESS_FIELDS, Watcher, WatchOptions
from taskstate.core.states import TERMINAL_STATES

PAGE_SIZE = 500
NAME_WIDTH = 48
BAR_WIDTH = 12
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


def add_tree_command(add: AddCommand) -> None:
    tree = add("tree", "a task's workflow: its root and every task under it, as a tree", _tree)
    tree.add_argument(
        "id", metavar="ID", help="any task of the workflow (or a unique prefix of its id): the whole tree"
    )
    tree.add_argument("--watch", action="store_true", help="follow it live until the root ends")
    add_reconnect_option(tree, when="with --watch: ")


def read_tree(client: Client, task_id: str) -> tuple[str, list[Json]]:
    """The root's id and every task of the tree of `task_id` (GET /api/v2/tasks?root_id=)."""
    task: Json = client.get(task_id)
    root_id = str(task.get("root_id") or task["id"])
    items: list[Json] = []
    cursor: str | None = None
    while True:
        params: list[tuple[str, str | int]] = [("root_id", root_id), ("limit", PAGE_SIZE)]
        if cursor:
            params.append(("cursor", cursor))
        page: Json = client.request("GET", "/api/v2/tasks", params=params)
        items.extend(page.get("items") or [])
        cursor = page.get("next_cursor")
        if not cursor:
            return root_id, items


def tree_lines(tasks: Mapping[str, Json], root_id: str) -> list[str]:
    """One line a task, the root first, each task under its parent (oldest first)."""
    rows = list(_walk(tasks, root_id))
    width = min(NAME_WIDTH, max((len(prefix) + len(_name(task)) for prefix, task in rows), default=0))
    lines = []
    for prefix, task in rows:
        name = clip(_name(task), max(8, width - len(prefix)))
        pct = f"{float(task.get('progress') or 0):5.1f}%"
        bar = progress_bar(task.get("progress"), width=BAR_WIDTH, percent=False)
        state = str(task.get("state"))
        line = f"{(prefix + name).ljust(width)}  {state:<10}  {bar} {pct}  {str(task['id'])[:8]}"
        note = _note(task, tasks)
        lines.append(f"{line}  {note}" if note else line)
    return lines


def _walk(tasks: Mapping[str, Json], root_id: str) -> Iterator[tuple[str, Json]]:
    children: dict[str, list[Json]] = {}
    for task in tasks.values():
        if task["id"] != root_id:
            parent = task.get("parent_id")
            children.setdefault(
                parent if isinstance(parent, str) and parent in tasks else root_id, []
            ).append(task)
    for siblings in children.values():
        siblings.sort(key=lambda t: (str(t.get("created_at")), str(t["id"])))

    def below(task_id: str, indent: str) -> Iterator[tuple[str, Json]]:
        kids = children.get(task_id, [])
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            yield indent + ("└─ " if last else "├─ "), child
            yield from below(str(child["id"]), indent + ("   " if last else "│  "))

    if root_id in tasks:
        yield "", tasks[root_id]
        yield from below(root_id, "")


def _name(task: Mapping[str, Any]) -> str:
    return str(task.get("name") or task.get("type") or task.get("id"))


def _note(task: Mapping[str, Any], tasks: Mapping[str, Json]) -> str:
    """What a task waits for: the children still open, or what blocks it."""
    open_children = task.get("waiting_for") or []
    if open_children and task.get("state") not in _TERMINAL:
        return f"waiting for {len(open_children)} of its children"
    if not task.get("blocked"):
        return ""
    reasons = []
    if any((q.get("context") or {}).get("kind") == "approval" for q in task.get("pending_questions") or []):
        reasons.append("approval")
    for dep_id in task.get("depends_on") or []:
        dep = tasks.get(dep_id)
        if dep is None or dep.get("state") != "completed":
            reasons.append(f"{_name(dep)} ({dep.get('state')})" if dep else str(dep_id)[:8])
    return f"blocked: waits for {', '.join(reasons)}" if reasons else "blocked"


class TreeWatcher(Watcher):
    """Follows one tree (`root_id`) until its root ends, keeping every task of it up to date."""

    def __init__(self, client: Client, root_id: str, tasks: list[Json], options: WatchOptions) -> None:
        super().__init__(client, task_id=None, options=options)
        self.scope = {"root_id": root_id}
        self.root_id = root_id
        self.tasks: dict[str, Json] = {str(t["id"]): t for t in tasks}

    def draw(self) -> None:
        self.terminal.block(tree_lines(self.tasks, self.root_id))

    def root_ended(self) -> bool:
        root = self.tasks.get(self.root_id)
        if root is None or root.get("state") not in _TERMINAL:
            return False
        self.final = root
        return True

    def _handle(self, event: Json) -> bool:
        kind = event.get("type")
        if kind in ("error", "resync"):
            return super()._handle(event)  # raises: the watcher reconnects, or gives up
        seq = event.get("seq")
        if kind == "transition" and isinstance(seq, int):
            if self.last_seq is not None and seq <= self.last_seq:
                return False  # seen before a reconnect
            self.last_seq = seq
        if self.json_lines:
            print(json.dumps(event, separators=(",", ":")), file=self.terminal.out, flush=True)
        if kind in ("snapshot", "snapshot_part"):
            self.last_seq = int(seq or 0)
            if kind == "snapshot":  # what changed before the stream began: read the tree again
                self.tasks = {str(t["id"]): t for t in read_tree(self.client, self.root_id)[1]}
            for task in event.get("tasks") or []:
                self._apply(task)
        elif kind == "transition":
            task = self._apply(event.get("task") or {})
            if not self.terminal.tty and not self.json_lines:
                self.terminal.line(self._transition_line(event, task))
        elif kind == "progress" and event.get("task_id") in self.tasks:
            task_id = str(event["task_id"])
            changes = {k: event[k] for k in PROGRESS_FIELDS if k in event}
            self.tasks[task_id] = {**self.tasks[task_id], **changes}
        else:
            return False
        if self.terminal.tty:
            self.draw()
        return self.root_ended()

    def _apply(self, task: Json) -> Json:
        """Keeps the newer copy of a task (by updated_at); answers the one kept."""
        if not task.get("id"):
            return task
        task_id = str(task["id"])
        self._remember(task)
        known = self.tasks.get(task_id)
        if known is None or str(task.get("updated_at") or "") >= str(known.get("updated_at") or ""):
            self.tasks[task_id] = task
        return self.tasks[task_id]


def _tree(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        root_id, tasks = read_tree(client, resolve_task_id(client, args.id))
        if not args.watch:
            if args.json:
                print_json({"root_id": root_id, "items": tasks})
            else:
                print("\n".join(tree_lines({str(t["id"]): t for t in tasks}, root_id)))
            return EXIT_OK
        options = WatchOptions(json_lines=args.json, reconnect_for=args.reconnect_for)
        watcher = TreeWatcher(client, root_id, tasks, options)
        if not args.json:
            watcher.draw()
        if not watcher.root_ended():
            watcher.run()
            if not args.json and not watcher.terminal.tty:
                watcher.draw()  # the tree as it ended
        return outcome(watcher.final)

    return run_with_client(args, run)
