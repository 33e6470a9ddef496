"""`taskstate logs ID [--follow]`: a task's log lines, and with `--follow` the new ones live
until the task ends.

Only the stored lines are printed (`GET /api/v2/tasks/{id}/logs?after=`, numbered by `seq`),
so that what `--follow` prints is exactly the task's log, each line once and in order, as
`logs` prints it afterwards: a line the stream tells of but that was never stored (its
instance died before writing it) is not printed, and a later line of the same `seq` is not
lost. The stream says when to read: the follower subscribes to the task's events first,
then reads; each `log` event tells of a line, read a moment later (the server writes a
job's lines every fraction of a second); a quiet stream is read anyway every second (a
task that runs on another instance sends its log events to that instance's subscribers
only). The task's end is written after its last lines, so a read once it has ended gets
all of them.
"""

from __future__ import annotations

import argparse
import json
import time

from taskstate.client.command_line import (
    EXIT_OK,
    AddCommand,
    add_reconnect_option,
    outcome,
    run_with_client,
)
from taskstate.client.following import STREAM_FAILURES, Reconnects, Resync
from taskstate.client.formatting import local_time_of_day
from taskstate.client.http import Client, ClientError, Json, task_path
from taskstate.client.ids import resolve_task_id

#: Lines asked for at a time.
PAGE_SIZE = 1000
#: Read the stored lines this often while the stream tells of lines not read yet.
READ_BEHIND_SECONDS = 0.2
#: And this often when it is quiet.
QUIET_SECONDS = 1.0


def add_logs_command(add: AddCommand) -> None:
    logs = add("logs", "a task's log lines; with --follow, new lines live until it ends", _logs)
    logs.add_argument("id", metavar="ID", help="the task's id, or a unique prefix of it (as printed)")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the task ends"
    )
    logs.add_argument(
        "--after", type=int, default=0, metavar="SEQ", help="only the lines after line SEQ (0: all)"
    )
    add_reconnect_option(logs, when="with --follow: ")


class LogPrinter:
    """Prints a task's stored lines after the newest it printed."""

    def __init__(self, client: Client, task_id: str, *, after: int, json_lines: bool) -> None:
        self.client = client
        self.task_id = task_id
        self.json_lines = json_lines
        #: The newest line printed (or skipped by `--after`).
        self.last = after

    def read_stored(self) -> None:
        while True:
            page: Json = self.client.request(
                "GET", task_path(self.task_id, "logs"), params=[("after", self.last), ("limit", PAGE_SIZE)]
            )
            items: list[Json] = page.get("items") or []
            for line in items:
                self._print(line)
            if len(items) < PAGE_SIZE:
                return

    def _print(self, line: Json) -> None:
        self.last = max(self.last, int(line["seq"]))
        if self.json_lines:
            fields = ("seq", "at", "level", "message")
            print(json.dumps({k: line.get(k) for k in fields}, separators=(",", ":")), flush=True)
        else:
            level = str(line.get("level") or "info")
            print(f"{local_time_of_day(line.get('at'))}  {level:<7}  {line.get('message')}", flush=True)


def follow_logs(client: Client, printer: LogPrinter, reconnect_for: float) -> Json:
    """Prints the task's lines until it has ended; answers the ended task."""
    from websockets.sync.client import connect

    tries = Reconnects(client.base_url, reconnect_for)
    task_id = printer.task_id
    while True:
        try:
            with connect(client.events_url({"task_id": task_id}), open_timeout=10, close_timeout=2) as ws:
                tries.connected()
                # Subscribed first: whatever happens from now on comes on the stream.
                task: Json = client.get(task_id)
                printer.read_stored()
                if task.get("is_terminal"):
                    return task
                told = 0  # the newest line the stream told of
                read_at = time.monotonic()
                while True:
                    every = READ_BEHIND_SECONDS if told > printer.last else QUIET_SECONDS
                    wait = read_at + every - time.monotonic()
                    if wait <= 0:
                        printer.read_stored()
                        read_at = time.monotonic()
                        continue
                    try:
                        message = json.loads(ws.recv(timeout=wait))
                    except TimeoutError:
                        continue
                    told = max(told, _told(message, task_id))
                    ended = _ended(message, task_id)
                    if ended is not None:
                        printer.read_stored()
                        return ended
        except Resync:
            continue  # subscribed again, and the stored lines read again: nothing is lost
        except STREAM_FAILURES as exc:
            time.sleep(tries.failed(exc))


def _told(message: Json, task_id: str) -> int:
    """The `seq` of the line a `log` event of the task tells of (else 0)."""
    kind = message.get("type")
    if kind == "error":
        raise ClientError(f"{message.get('error')}: {message.get('detail', '')}", code=message.get("error"))
    if kind == "resync":
        raise Resync
    seq = message.get("seq")
    return seq if kind == "log" and message.get("task_id") == task_id and isinstance(seq, int) else 0


def _ended(message: Json, task_id: str) -> Json | None:
    """The task, if `message` is its transition to a terminal state."""
    task = message.get("task") if message.get("type") == "transition" else None
    if isinstance(task, dict) and message.get("task_id") == task_id and task.get("is_terminal"):
        return task
    return None


def _logs(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        task_id = resolve_task_id(client, args.id)
        printer = LogPrinter(client, task_id, after=args.after, json_lines=args.json)
        if not args.follow:
            printer.read_stored()
            return EXIT_OK
        return outcome(follow_logs(client, printer, args.reconnect_for))

    return run_with_client(args, run)
