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
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from taskstate.client.formatting import (
    clip,
    duration,
    local_datetime,
    local_time_of_day,
    print_json,
    print_table,
    print_task,
    progress_bar,
)
from taskstate.client.http import DEFAULT_URL, Client, ClientError, Json, ServerUnreachable, task_path
from taskstate.core.states import TERMINAL_STATES, State

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_UNREACHABLE = 3
EXIT_TASK_UNSUCCESSFUL = 4
EXIT_INTERRUPTED = 130

#: WebSocket close codes after which reconnecting cannot help (policy violation, auth, app errors).
_FATAL_CLOSE_CODES = frozenset({1003, 1007, 1008, 1009, 1010})
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


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
        default=60.0,
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
        final = _follow_task(client, args, task["id"], quiet=args.json)
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
        if args.id is None:
            Watcher(client, args, task_id=None, quiet=False).run()
            return EXIT_OK
        return _outcome(_follow_task(client, args, args.id, quiet=False))

    return _run(args, run)


def _follow_task(client: Client, args: argparse.Namespace, task_id: str, *, quiet: bool) -> Json | None:
    """Show one task's transitions so far, then follow it live until it ends; answers it then.

    Reads its transition rows and the task (a 404 for an unknown id comes from here), then
    subscribes with `since` = the newest of those rows: the stream replays whatever came after.
    """
    # Rows first: the task read after them is at least as new, so a terminal row has a terminal task.
    rows: list[Json] = client.request("GET", task_path(task_id, "transitions"))["items"]
    task: Json = client.request("GET", task_path(task_id))
    watcher = Watcher(client, args, task_id=str(task["id"]), quiet=quiet)
    if watcher.preload(task, rows):
        return watcher.final
    return watcher.run()


def _outcome(task: Json | None) -> int:
    return EXIT_OK if task is not None and task.get("state") == State.COMPLETED else EXIT_TASK_UNSUCCESSFUL


# -- the live view --------------------------------------------------------------------------


class Watcher:
    """Follows `/api/v2/events`: reconnects with `since` on a drop or a `resync`, so that no
    transition is missed or printed twice; with a task id, ends when that task does."""

    def __init__(self, client: Client, args: argparse.Namespace, *, task_id: str | None, quiet: bool) -> None:
        self.client = client
        self.task_id = task_id
        self.json_lines = bool(args.json) and not quiet
        self.quiet = quiet
        self.logs = bool(getattr(args, "logs", False))
        self.reconnect_for = float(getattr(args, "reconnect_for", 60.0))
        self.out = sys.stdout
        self.tty = self.out.isatty() and not self.json_lines
        self.last_seq: int | None = None
        self.final: Json | None = None
        self.interrupted = False
        self.names: dict[str, str] = {}
        self.bar_shown = False

    def preload(self, task: Json, rows: list[Json]) -> bool:
        """Show the transitions already recorded as if they were replayed; True if the task ended."""
        self._remember(task)
        for row in rows:
            event = {
                "type": "transition",
                "seq": row.get("seq"),
                "task_id": row.get("task_id"),
                "from": row.get("from_state"),
                "to": row.get("to_state"),
                "at": row.get("at"),
                "reason": row.get("reason"),
                "task": task,
            }
            if self._handle(event):
                return True
        if self.last_seq is None:
            self.last_seq = 0
        if task.get("state") in _TERMINAL:  # ended between the two reads: the stream replays it
            return False
        if not self.json_lines and task.get("progress"):
            text = f"{self._who(task)}  {progress_bar(task.get('progress'))}"
            self._progress(text + (f"  {task['message']}" if task.get("message") else ""))
        return False

    def run(self) -> Json | None:
        try:
            return asyncio.run(self._follow_until_interrupted())
        finally:
            self._end_bar()

    async def _follow_until_interrupted(self) -> Json | None:
        """`_follow`, ended by Ctrl-C (SIGINT) however busy it is.

        asyncio.run's own handler only cancels the main task once, and a cancellation that
        lands while a connection attempt times out can be taken for that timeout (Python
        3.11's `asyncio.timeout`), leaving the watcher reconnecting after the user asked it
        to stop. The flag set here is checked at every turn of the reconnect loop too.
        """
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None

        def interrupt() -> None:
            self.interrupted = True
            main.cancel()

        try:
            loop.add_signal_handler(signal.SIGINT, interrupt)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            return await self._follow()
        try:
            return await self._follow()
        except asyncio.CancelledError:
            if self.interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    async def _follow(self) -> Json | None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        failing_since: float | None = None
        delay = 0.2
        while True:
            if self.interrupted:
                raise KeyboardInterrupt
            query: dict[str, str] = {}
            if self.task_id is not None:
                query["task_id"] = self.task_id
            if self.last_seq is not None:
                query["since"] = str(self.last_seq)
            url = self.client.events_url(query)
            try:
                async with connect(
                    url,
                    additional_headers=self.client.auth_headers(),
                    open_timeout=10,
                    # On the way out (Ctrl-C), wait for the server's close frame only briefly.
                    close_timeout=2,
                    max_size=16 * 1024 * 1024,
                ) as ws:
                    if failing_since is not None:
                        self._note("reconnected")
                    failing_since, delay = None, 0.2
                    async for raw in ws:
                        try:
                            event = json.loads(raw)
                        except ValueError:
                            event = None
                        if not isinstance(event, dict):
                            raise ClientError(
                                f"the event stream sent something that is not a JSON object: {raw[:200]!r}"
                            )
                        if self._handle(event):
                            return self.final
                    code = ws.close_code
                    reason = ws.close_reason
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403, 404):
                    body = exc.response.body.decode(errors="replace").strip()[:300]
                    raise ClientError(
                        f"the server refused the event stream: {status} {body}".strip(), status=status
                    ) from None
                code, reason = None, f"handshake answered {status}"
            except _Resync:
                code, reason = None, "resync: this client fell behind"
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason if exc.rcvd is not None else str(exc)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                if self.last_seq is None and failing_since is None:
                    raise ServerUnreachable.at(self.client.base_url, exc) from exc
                code, reason = None, str(exc) or type(exc).__name__
            if code is not None and (code in _FATAL_CLOSE_CODES or 4000 <= code < 5000):
                raise ClientError(
                    f"the server closed the event stream ({code}{': ' + reason if reason else ''})"
                )
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
                what = " ".join(str(x) for x in (code, reason) if x)
                self._note(f"connection lost ({what or 'no reason given'}); reconnecting")
            elif now - failing_since > self.reconnect_for:
                raise ServerUnreachable(
                    f"lost the event stream and could not reconnect for {self.reconnect_for:.0f}s: {reason}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _handle(self, event: Json) -> bool:
        """Show one event; answers True once the watched task has ended."""
        kind = event.get("type")
        if kind == "error":
            code = event.get("error")
            raise ClientError(
                f"{event.get('error', 'error')}: {event.get('detail', '')}".strip(),
                code=code if isinstance(code, str) else None,
            )
        if kind == "resync":
            raise _Resync()
        seq = event.get("seq") if kind == "transition" else None
        if isinstance(seq, int):
            if self.last_seq is not None and seq <= self.last_seq:
                return False  # already shown before a reconnect
            self.last_seq = seq
        if self.json_lines:
            print(json.dumps(event, separators=(",", ":")), file=self.out, flush=True)
        if kind in ("snapshot", "snapshot_part"):
            # A large snapshot comes in parts (`part` k of `parts`), all of the same seq.
            self.last_seq = int(event.get("seq") or 0)
            tasks: list[Json] = event.get("tasks") or []
            for task in tasks:
                self._remember(task)
                if not self.json_lines:
                    self._line(
                        f"{self._who(task)}  {task.get('state')}  {progress_bar(task.get('progress'))}"
                        + (f"  {task['message']}" if task.get("message") else "")
                    )
            if not tasks and kind == "snapshot" and self.task_id is None and not self.json_lines:
                self._line("no active tasks; waiting for events (Ctrl-C to stop)")
            for task in tasks:
                if task.get("id") == self.task_id and task.get("state") in _TERMINAL:
                    if not self.json_lines:
                        self._summary(task)
                    self.final = task
                    return True
            return False
        if kind == "transition":
            task = event.get("task") or {}
            self._remember(task)
            if not self.json_lines:
                reason = f"  ({event['reason']})" if event.get("reason") else ""
                line = f"{local_time_of_day(event.get('at'))}  {self._who(task, event.get('task_id'))}  "
                line += f"{event.get('from') or '-'} -> {event.get('to')}{reason}"
                self._line(line)
                if event.get("to") in _TERMINAL and (
                    self.task_id is None or event.get("task_id") == self.task_id
                ):
                    self._summary(task)
            if event.get("task_id") == self.task_id and event.get("to") in _TERMINAL:
                self.final = task
                return True
            return False
        if self.json_lines:
            return False
        if kind == "progress":
            text = f"{self._who({}, event.get('task_id'))}  {progress_bar(event.get('progress'))}"
            if event.get("message"):
                text += f"  {event['message']}"
            self._progress(text)
        elif kind == "log" and self.logs:
            self._line(f"{self._who({}, event.get('task_id'))}  {event.get('level')}: {event.get('message')}")
        elif kind == "question":
            question: Json = event.get("question") or {}
            if question.get("status", "pending") == "pending":
                choices = question.get("choices")
                suffix = f"  [{' / '.join(map(str, choices))}]" if choices else ""
                self._line(
                    f"{self._who({}, event.get('task_id'))}  asks {question.get('id')}: "
                    f"{question.get('question')}{suffix}"
                )
        return False

    def _remember(self, task: Json) -> None:
        if task.get("id") and task.get("name"):
            self.names[str(task["id"])] = str(task["name"])

    def _who(self, task: Json, task_id: Any = None) -> str:
        tid = str(task.get("id") or task_id or "?")
        name = self.names.get(tid)
        return f"{tid[:8]} {clip(name, 24)}" if name else tid[:8]

    def _summary(self, task: Json) -> None:
        state = task.get("state")
        text = f"{self._who(task)}  {state} after {duration(task.get('duration_seconds'))}"
        if task.get("error"):
            text += f": {task['error']}"
        elif task.get("result") is not None:
            text += f"; result {clip(json.dumps(task['result'], sort_keys=True), 200)}"
        self._line(text)

    # Terminal handling: on a TTY the progress bar is one line redrawn in place, and other
    # lines are printed above it; elsewhere every progress report is a line of its own.

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        self._end_bar()
        print(text, file=self.out, flush=True)

    def _progress(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.out.write("\r\x1b[2K" + text)
            self.out.flush()
            self.bar_shown = True
        else:
            print(text, file=self.out, flush=True)

    def _note(self, text: str) -> None:
        if not self.quiet and not self.json_lines:
            self._end_bar()
            print(f"taskstate: {text}", file=sys.stderr, flush=True)

    def _end_bar(self) -> None:
        if self.bar_shown:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self.bar_shown = False


class _Resync(Exception):
    """The server dropped this subscriber for lagging: reconnect with `since`."""
