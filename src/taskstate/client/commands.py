"""The `taskstate` commands for people: submit, status, watch, logs, cancel, stop, retry,
answer, tasks, workers, tree, schedules, reset.

They talk to a running server over its HTTP API and its WebSocket `/api/v2/events`
(CONTRACT §2, §3), never to the database. Every command takes `--url` (TASKSTATE_URL),
`--token` (TASKSTATE_TOKEN) and `--json` (machine-readable output on stdout), before or
after its name. A task's ID may be shortened to any unique prefix (ids.py).

Exit codes: 0 done; 1 the server refused (its `{"error", "detail"}` goes to stderr), or no
task has that id; 2 bad usage, or a short id that several tasks' ids start with; 3 the
server cannot be reached; 4 the task waited on ended `failed` or `cancelled` (`submit
--wait`, `watch ID`, `tree ID --watch`, `retry --wait`, `logs --follow`); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from taskstate.client.admin_commands import add_reset_command
from taskstate.client.command_line import (
    EPILOG,
    EXIT_OK,
    add_param_option,
    add_reconnect_option,
    common_options,
    outcome,
    parse_value,
    run_with_client,
)
from taskstate.client.formatting import (
    clip,
    duration,
    local_datetime,
    print_json,
    print_table,
    print_task,
    question_text,
)
from taskstate.client.http import Client, ClientError, Json
from taskstate.client.ids import AmbiguousId, resolve_task_id
from taskstate.client.logs import add_logs_command
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
        help="a task (its id or a unique prefix) that must complete before this one runs (repeatable)",
    )
    submit.add_argument(
        "--requires-approval",
        action="store_true",
        help="hold the task until a person approves it (its approval question)",
    )
    submit.add_argument("--wait", action="store_true", help="follow the task until it ends, like `watch ID`")

    status = add("status", "show one task", _status)
    add_id_argument(status)

    watch = add(
        "watch",
        "follow transitions and progress live; with ID, until that task ends",
        _watch,
    )
    watch.add_argument(
        "id", metavar="ID", nargs="?", help="only this task (or a unique prefix of its id), until it ends"
    )
    watch.add_argument("--logs", action="store_true", help="also print the tasks' log lines")
    add_reconnect_option(watch)

    add_logs_command(add)
    add_id_argument(add("cancel", "cancel a task", _cancel))
    add_id_argument(add("stop", "stop a serving service task (it shuts down, then completes)", _stop))
    retry = add("retry", "start a new task like a failed or cancelled one", _retry)
    add_id_argument(retry)
    retry.add_argument("--wait", action="store_true", help="follow the new task until it ends")
    answer = add("answer", "answer a question a task asks (an approval too)", _answer)
    add_id_argument(answer)
    answer.add_argument(
        "answer",
        metavar="ANSWER",
        help="one of the question's choices as typed; else read as JSON if it parses (5, true), "
        "else as a string",
    )
    answer.add_argument(
        "--question",
        metavar="QUESTION_ID",
        help="which of the task's pending questions (its id, or the start of it); "
        "needed only when it asks several",
    )

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
    add_reset_command(add)


def add_id_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="the task's id, or a unique prefix of it (as printed)")


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
    if args.requires_approval:
        body["requires_approval"] = True

    def run(client: Client) -> int:
        if args.depends_on:
            body["depends_on"] = [resolve_task_id(client, ref) for ref in args.depends_on]
        task: Json = client.request("POST", "/api/v2/tasks", json=body)
        return _announce(client, task, f"submitted {task['id']}", args)

    return run_with_client(args, run)


def _announce(client: Client, task: Json, what: str, args: argparse.Namespace) -> int:
    """A task just made (`submit`, `retry`): said, then with `--wait` followed until it ends."""
    if not args.wait:
        if args.json:
            print_json(task)
        else:
            print(f"{what}  ({task['type']}, {task['state']})")
        return EXIT_OK
    if not args.json:
        print(f"{what}  ({task['type']})", flush=True)
    return _follow(client, task["id"], args.json)


def _follow(client: Client, task_id: str, as_json: bool) -> int:
    """`--wait`: the task followed live until it ends (with `--json`, only the ended task)."""
    final = follow_task(client, task_id, WatchOptions(quiet=as_json))
    if as_json:
        # As `status --json` prints it: the HTTP API's rendering of the ended task.
        final = client.get(task_id)
        print_json(final)
    return outcome(final)


def _status(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        task: Json = client.get(resolve_task_id(client, args.id))
        if args.json:
            print_json(task)
        else:
            print_task(task, sys.stdout)
        return EXIT_OK

    return run_with_client(args, run)


def _cancel(args: argparse.Namespace) -> int:
    return _move(args, Client.cancel)


def _stop(args: argparse.Namespace) -> int:
    return _move(args, Client.stop)


def _move(args: argparse.Namespace, call: Callable[[Client, str], Json]) -> int:
    """`cancel` or `stop`: the call, then the task's state as it left it."""

    def run(client: Client) -> int:
        task = call(client, resolve_task_id(client, args.id))
        if args.json:
            print_json(task)
        else:
            print(f"{task['id']}: {task['state']}")
        return EXIT_OK

    return run_with_client(args, run)


def _retry(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        task = client.retry(resolve_task_id(client, args.id))
        return _announce(client, task, f"retried {task['retry_of']} as {task['id']}", args)

    return run_with_client(args, run)


def _answer(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        task = client.get(resolve_task_id(client, args.id))
        question = _pending_question(task, args.question)
        choices = question.get("choices") or []
        value = args.answer if args.answer in choices else parse_value(args.answer)
        answered = client.answer(task["id"], question["id"], value)
        if args.json:
            print_json(answered)
        else:
            print(f"{answered['id']}: answered {question_text(question)} with {json.dumps(value)}")
            print(f"{answered['id']}: {answered['state']}")
        return EXIT_OK

    return run_with_client(args, run)


def _pending_question(task: Json, wanted: str | None) -> Json:
    """The pending question of `task` that `wanted` names (its id or the start of it), or
    its only one when `wanted` is None."""
    pending: list[Json] = task.get("pending_questions") or []
    if wanted is not None:
        pending = [q for q in pending if str(q.get("id", "")).startswith(wanted.strip())]
    if len(pending) == 1:
        return pending[0]
    if not pending:
        which = f" with an id starting with {wanted!r}" if wanted is not None else ""
        raise ClientError(
            f"task {task['id']} ({task.get('state')}) has no pending question{which}", code="not_found"
        )
    lines = "\n".join(f"  {question_text(q)}" for q in pending)
    raise AmbiguousId(
        f"task {task['id']} asks {len(pending)} questions: choose one with --question:\n{lines}",
        code="ambiguous_id",
    )


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
        return outcome(follow_task(client, resolve_task_id(client, args.id), options))

    return run_with_client(args, run)
