"""`taskstate logs ID [--follow]`: a task's log lines, and with `--follow` the new ones live
until the task ends.

The stored lines (`GET /api/v2/tasks/{id}/logs?after=`) are numbered by `seq`, and each
`log` event on the stream carries the `seq` of its line. The follower subscribes to the
task's events first and reads the stored lines after: a line is in one or the other, and
printing in `seq` order, each `seq` once, loses none and repeats none. A line the stream
brings ahead of one not seen yet waits until the stored lines fill the gap (the server
writes them every fraction of a second); the stored lines are read again whenever the
stream is quiet, which also covers a task that runs on another instance, whose log events
this instance's stream does not carry. The task's end is flushed after its last lines, so
the lines read once it has ended are all of them.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

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
#: Read the stored lines again after this long without an event.
QUIET_SECONDS = 1.0
#: How long a line may wait for an earlier one that neither the stream nor the store has
#: (it was never stored: its attempt lost the task); then it is printed all the same.
GAP_SECONDS = 5.0


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
    """Prints a task's lines in `seq` order, each once, however they arrive."""

    def __init__(self, client: Client, task_id: str, *, after: int, json_lines: bool) -> None:
        self.client = client
        self.task_id = task_id
        self.json_lines = json_lines
        #: The newest line printed (or skipped by `--after`).
        self.last = after
        #: Lines from the stream that came ahead of one not printed yet, by seq.
        self.waiting: dict[int, Json] = {}
        self._gap_since: float | None = None

    def read_stored(self) -> None:
        """Prints every stored line after the newest printed, then what waited for them."""
        while True:
            page: Json = self.client.request(
                "GET", task_path(self.task_id, "logs"), params=[("after", self.last), ("limit", PAGE_SIZE)]
            )
            items: list[Json] = page.get("items") or []
            for line in items:
                self._print(line)
            if len(items) < PAGE_SIZE:
                break
        self._print_waiting()

    def offer(self, line: Json) -> None:
        """A line from the stream: printed now if it is the next one, else kept until it is."""
        seq = line.get("seq")
        if not isinstance(seq, int) or seq <= self.last:
            return
        self.waiting[seq] = line
        self._print_waiting()

    def gap_is_old(self) -> bool:
        return self._gap_since is not None and time.monotonic() - self._gap_since > GAP_SECONDS

    def flush(self) -> None:
        """Prints whatever still waits, in order: nothing will fill its gaps any more."""
        for seq in sorted(self.waiting):
            self._print(self.waiting[seq])
        self.waiting.clear()
        self._gap_since = None

    def _print_waiting(self) -> None:
        for seq in [s for s in self.waiting if s <= self.last]:
            del self.waiting[seq]
        while self.last + 1 in self.waiting:
            self._print(self.waiting.pop(self.last + 1))
        if not self.waiting:
            self._gap_since = None
        elif self._gap_since is None:
            self._gap_since = time.monotonic()

    def _print(self, line: Json) -> None:
        seq = int(line["seq"])
        if seq <= self.last:
            return
        self.last = seq
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
            url = client.events_url({"task_id": task_id})
            with connect(url, open_timeout=10, close_timeout=2, max_size=None) as ws:
                tries.connected()
                # Subscribed first: whatever happens from now on comes on the stream.
                task: Json = client.get(task_id)
                printer.read_stored()
                if task.get("is_terminal"):
                    printer.flush()
                    return task
                while True:
                    try:
                        raw = ws.recv(timeout=QUIET_SECONDS)
                    except TimeoutError:
                        printer.read_stored()
                        if printer.gap_is_old():
                            printer.flush()
                        continue
                    ended = _take(printer, json.loads(raw), task_id)
                    if ended is not None:
                        printer.read_stored()
                        printer.flush()
                        return ended
        except Resync:
            continue  # subscribed again, the stored lines read again: nothing is lost
        except STREAM_FAILURES as exc:
            time.sleep(tries.failed(exc))


def _take(printer: LogPrinter, message: Any, task_id: str) -> Json | None:
    """Handles one message of the stream; answers the task if it shows the task has ended."""
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "error":
        raise ClientError(f"{message.get('error')}: {message.get('detail', '')}", code=message.get("error"))
    if kind == "resync":
        raise Resync
    if message.get("task_id") != task_id:
        return None
    if kind == "log":
        printer.offer(message)
    elif kind == "transition" and (message.get("task") or {}).get("is_terminal"):
        ended: Json = message["task"]
        return ended
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
