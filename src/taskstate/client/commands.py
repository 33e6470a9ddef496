"""The `taskstate` commands for people: submit, status, watch, cancel, tasks, workers.

They talk to a running server over its HTTP API and its WebSocket `/api/v2/events`
(CONTRACT §2, §3), never to the database. Every command takes `--url` (TASKSTATE_URL),
`--token` (TASKSTATE_TOKEN) and `--json` (machine-readable output on stdout).

Exit codes: 0 done; 1 the server refused (its `{"error", "detail"}` goes to stderr);
2 bad usage; 3 the server cannot be reached; 4 the task waited on ended `failed` or
`cancelled` (`submit --wait`, `watch ID`); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from taskstate.client.formatting import clip, duration, local_datetime, print_json, print_table, print_task
from taskstate.client.http import DEFAULT_URL, Client, ClientError, Json, ServerUnreachable, task_path
from taskstate.client.watch import DEFAULT_RECONNECT_SECONDS, Watcher, WatchOptions, follow_task
from taskstate.core.states import State

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_UNREACHABLE = 3
EXIT_TASK_UNSUCCESSFUL = 4
EXIT_INTERRUPTED = 130


# -- arguments ------------------------------------------------------------------------------


def _param(text: str) -> tuple[str, Any]:
    """`k=v`: the value is JSON when it parses as JSON, else the string itself."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw, parse_constant=_not_json)
    except ValueError:
        value = raw  # including NaN and Infinity, which JSON does not have
    return key, value


def _not_json(constant: str) -> Any:
    raise ValueError(constant)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        default=os.environ.get("TASKSTATE_URL") or DEFAULT_URL,
        help=f"the server (TASKSTATE_URL, default {DEFAULT_URL})",
    )
    group.add_argument(
        "--token",
        default=os.environ.get("TASKSTATE_TOKEN") or None,
        help="API token, sent as 'Authorization: Bearer ...'; prefer TASKSTATE_TOKEN (not shown by ps)",
    )
    group.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")
    group.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="HTTP request timeout (30)"
    )
    return common


def add_client_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client commands on the `taskstate` parser's subcommands."""
    common = _common_options()
    formatter = argparse.RawDescriptionHelpFormatter
    epilog = (
        "exit codes: 0 ok, 1 the server refused, 2 bad usage, 3 server unreachable,\n"
        "4 the task ended failed or cancelled (when waiting on it)"
    )

    def add(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(
            name, help=help, description=help, parents=[common], epilog=epilog, formatter_class=formatter
        )
        parser.set_defaults(func=func)
        return parser

    submit = add("submit", "start a task", _submit)
    submit.add_argument("type", metavar="TYPE", help="the job type (see GET /api/v2/task-types)")
    submit.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="a parameter; VALUE is read as JSON if it parses (5, true, [1,2]), else as a string",
    )
    submit.add_argument("--name", help="a name for the task (default: its type)")
    submit.add_argument("--priority", type=int, help="higher runs first (default 0)")
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
    watch.add_argument(
        "--reconnect-for",
        type=float,
        default=DEFAULT_RECONNECT_SECONDS,
        metavar="SECONDS",
        help="how long to keep trying to reconnect after the connection drops (60)",
    )

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


# -- running a command ----------------------------------------------------------------------


def _quiet_libraries() -> None:
    # `taskstate` configures logging at INFO for `serve`; a client's output is its own.
    for name in ("httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run(args: argparse.Namespace, body: Callable[[Client], int]) -> int:
    _quiet_libraries()
    try:
        with Client(args.url, token=args.token, timeout=args.timeout) as client:
            return body(client)
    except ClientError as exc:
        print(f"taskstate: error: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE if isinstance(exc, ServerUnreachable) else EXIT_SERVER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`taskstate tasks --json | head`): stop quietly, as Python's docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_SERVER_ERROR


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
            final = client.request("GET", task_path(task["id"]))
            print_json(final)
        return _outcome(final)

    return _run(args, run)


def _status(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        task: Json = client.request("GET", task_path(args.id))
        if args.json:
            print_json(task)
        else:
            print_task(task, sys.stdout)
        return EXIT_OK

    return _run(args, run)


def _cancel(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        task: Json = client.request("POST", task_path(args.id, "cancel"))
        if args.json:
            print_json(task)
        else:
            print(f"{task['id']}: {task['state']}")
        return EXIT_OK

    return _run(args, run)


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

    return _run(args, run)


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

    return _run(args, run)


def _watch(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        options = WatchOptions(json_lines=args.json, logs=args.logs, reconnect_for=args.reconnect_for)
        if args.id is None:
            Watcher(client, task_id=None, options=options).run()
            return EXIT_OK
        return _outcome(follow_task(client, args.id, options))

    return _run(args, run)


def _outcome(task: Json | None) -> int:
    return EXIT_OK if task is not None and task.get("state") == State.COMPLETED else EXIT_TASK_UNSUCCESSFUL
