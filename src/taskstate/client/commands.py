"""The `taskstate` commands for people: submit, status, watch, cancel, tasks, workers, tree,
schedules.

They talk to a running server over its HTTP API and its WebSocket `/api/v2/events`
(CONTRACT §2, §3), never to the database. Every command takes `--url` (TASKSTATE_URL),
`--token` (TASKSTATE_TOKEN) and `--json` (machine-readable output on stdout).

Exit codes: 0 done; 1 the server refused (its `{"error", "detail"}` goes to stderr);
2 bad usage; 3 the server cannot be reached; 4 the task waited on ended `failed` or
`cancelled` (`submit --wait`, `watch ID`, `tree ID --watch`); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from taskstate.client.command_line import (
    EPILOG,
    EXIT_OK,
    add_param_option,
    add_reconnect_option,
    common_options,
    outcome,
    run_with_client,
)
from taskstate.client.formatting import clip, duration, local_datetime, print_json, print_table, print_task
from taskstate.client.http import Client, Json
from taskstate.client.schedules import add_schedule_commands
from taskstate.client.tree import add_tree_command
from taskstate.client.watch import Watcher, WatchOptions, follow_task
from taskstate.core.states import State


def add_client_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client commands on the `taskstate` parser's subcommands."""
    common = common_options()
    formatter = argparse.RawDescriptionHelpFormatter

    def add(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(
            name, help=help, description=help, parents=[common], epilog=EPILOG, formatter_class=formatter
        )
        parser.set_defaults(func=func)
        return parser

    submit = add("submit", "start a task", _submit)
    submit.add_argument("type", metavar="TYPE", help="the job type (see GET /api/v2/task-types)")
    add_param_option(submit)
    submit.add_argument("--name", help="a name for the task (default: its type)")
    submit.add_argument("--priority", type=int, help="higher runs first (default 0)")
    submit.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="ID",
        help="a task that must complete before this one runs (repeatable)",
    )
    submit.add_argument(
        "--requires-approval",
        action="store_true",
        help="hold the task until a person approves it (its approval question)",
    )
    submit.add_argument("--wait", action="store_true", help="follow the task until it ends, like `watch ID`")

    status = add("status", "show one task", _status)
    status.add_argument("id", metavar="ID", help="the task's id")

    watch = add(
        "watch",
        "follow transitions and progress live; with ID, until that task ends",
        _watch,
    )
    watch.add_argument("id", metavar="ID", nargs="?", help="only this task, and exit when it ends")
    watch.add_argument("--logs", action="store_true", help="also print the tasks' log lines")
    add_reconnect_option(watch)

    cancel = add("cancel", "cancel a task", _cancel)
    cancel.add_argument("id", metavar="ID", help="the task's id")

    tasks = add("tasks", "the task history, newest first", _tasks)
    tasks.add_argument(
        "--state",
        action="append",
        choices=[s.value for s in State],
        help="only tasks in this state (repeatable)",
    )
    tasks.add_argument("--type", help="only tasks of this job type")
    tasks.add_argument("--search", help="only tasks whose name contains this")
    tasks.add_argument("--limit", type=int, default=20, help="how many (default 20, at most 500)")

    add("workers", "the server instances and the tasks they hold", _workers)
    add_tree_command(add)
    add_schedule_commands(subparsers, common)


# -- commands -------------------------------------------------------------------------------


def _submit(args: argparse.Namespace) -> int:
    body: Json = {
        "type": args.type,
        "params": dict(args.params),
        "trigger": "manual",
        "trigger_source": "cli",
    }
    if args.name is not None:
        body["name"] = args.name
    if args.priority is not None:
        body["priority"] = args.priority
    if args.depends_on:
        body["depends_on"] = args.depends_on
    if args.requires_approval:
        body["requires_approval"] = True

    def run(client: Client) -> int:
        task: Json = client.request("POST", "/api/v2/tasks", json=body)
        if not args.wait:
            if args.json:
                print_json(task)
            else:
                print(f"submitted {task['id']}  ({task['type']}, {task['state']})")
            return EXIT_OK
        if not args.json:
            print(f"submitted {task['id']}  ({task['type']})", flush=True)
        final = follow_task(client, task["id"], WatchOptions(quiet=args.json))
        if args.json:
            # As `status --json` prints it: the HTTP API's rendering of the ended task.
            final = client.get(task["id"])
            print_json(final)
        return outcome(final)

    return run_with_client(args, run)


def _status(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        task: Json = client.get(args.id)
        if args.json:
            print_json(task)
        else:
            print_task(task, sys.stdout)
        return EXIT_OK

    return run_with_client(args, run)


def _cancel(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        task: Json = client.cancel(args.id)
        if args.json:
            print_json(task)
        else:
            print(f"{task['id']}: {task['state']}")
        return EXIT_OK

    return run_with_client(args, run)


def _tasks(args: argparse.Namespace) -> int:
    params: list[tuple[str, str | int]] = [("limit", args.limit)]
    params += [("state", s) for s in args.state or []]
    if args.type:
        params.append(("type", args.type))
    if args.search:
        params.append(("q", args.search))

    def run(client: Client) -> int:
        page: Json = client.request("GET", "/api/v2/tasks", params=params)
        if args.json:
            print_json(page)
            return EXIT_OK
        items: list[Json] = page.get("items", [])
        rows = [
            [
                str(t.get("id")),
                clip(t.get("type"), 24),
                clip(t.get("name"), 30),
                str(t.get("state")),
                f"{float(t.get('progress') or 0):.0f}%",
                local_datetime(t.get("created_at")),
                duration(t.get("duration_seconds")),
            ]
            for t in items
        ]
        print_table(["ID", "TYPE", "NAME", "STATE", "PROGRESS", "CREATED", "DURATION"], rows, sys.stdout)
        total = page.get("total", len(items))
        print(f"{len(items)} of {total} task{'s' if total != 1 else ''}")
        return EXIT_OK

    return run_with_client(args, run)


def _workers(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        page: Json = client.request("GET", "/api/v2/workers")
        if args.json:
            print_json(page)
            return EXIT_OK
        rows = [
            [
                str(w.get("id")),
                str(w.get("host")),
                str(w.get("pid")),
                str(w.get("state")),
                local_datetime(w.get("started_at")),
                duration(w.get("heartbeat_age_seconds")),
                str(len(w.get("tasks") or [])),
            ]
            for w in page.get("items", [])
        ]
        print_table(["ID", "HOST", "PID", "STATE", "STARTED", "HEARTBEAT AGE", "TASKS"], rows, sys.stdout)
        return EXIT_OK

    return run_with_client(args, run)


def _watch(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        options = WatchOptions(json_lines=args.json, logs=args.logs, reconnect_for=args.reconnect_for)
        if args.id is None:
            Watcher(client, task_id=None, options=options).run()
            return EXIT_OK
        return outcome(follow_task(client, args.id, options))

    return run_with_client(args, run)
