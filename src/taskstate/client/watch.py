"""The live view of `taskstate watch` and `submit --wait`: the event stream, followed.

The stream (`/api/v2/events`, CONTRACT §3) is a snapshot then events, each transition
numbered by `seq`. The watcher remembers the last `seq` it showed and reconnects with
`since` after a drop or a `resync`, so that no transition is missed or shown twice;
Ctrl-C ends it at once, whatever it is waiting for.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass
from typing import Any

from taskstate.client.formatting import (
    clip,
    duration,
    json_excerpt,
    local_time_of_day,
    progress_text,
    question_text,
)
from taskstate.client.http import Client, ClientError, Json, ServerUnreachable, task_path
from taskstate.client.terminal import Terminal
from taskstate.core.states import TERMINAL_STATES

DEFAULT_RECONNECT_SECONDS = 60.0

#: WebSocket close codes after which reconnecting cannot help (policy violation, auth, app errors).
_FATAL_CLOSE_CODES = frozenset({1003, 1007, 1008, 1009, 1010})
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)
#: What a progress event changes of its task.
PROGRESS_FIELDS = ("progress", "phase", "message", "items_processed", "items_failed", "waiting_for")


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """What a watcher shows, and how long it keeps trying after the connection drops."""

    #: Every event as one line of JSON (`--json`) instead of text for people.
    json_lines: bool = False
    #: Nothing at all: the caller wants only how the task ends (`submit --wait --json`).
    quiet: bool = False
    #: The tasks' log lines too (`--logs`).
    logs: bool = False
    #: Seconds to keep reconnecting before giving up (`--reconnect-for`).
    reconnect_for: float = DEFAULT_RECONNECT_SECONDS


def follow_task(client: Client, task_id: str, options: WatchOptions) -> Json | None:
    """Show one task's transitions so far, then follow it live until it ends; answers it then.

    Reads its transition rows and the task (a 404 for an unknown id comes from here), then
    subscribes with `since` = the newest of those rows: the stream replays whatever came after.
    """
    # Rows first: the task read after them is at least as new, so a terminal row has a terminal task.
    rows: list[Json] = client.request("GET", task_path(task_id, "transitions"))["items"]
    task: Json = client.get(task_id)
    watcher = Watcher(client, task_id=str(task["id"]), options=options)
    if watcher.preload(task, rows):
        return watcher.final
    return watcher.run()


class Watcher:
    """Follows `/api/v2/events`: reconnects with `since` on a drop or a `resync`, so that no
    transition is missed or printed twice; with a task id, ends when that task does."""

    def __init__(self, client: Client, *, task_id: str | None, options: WatchOptions) -> None:
        self.client = client
        self.task_id = task_id
        self.json_lines = options.json_lines and not options.quiet
        self.logs = options.logs
        self.reconnect_for = options.reconnect_for
        self.terminal = Terminal(quiet=options.quiet, json_lines=self.json_lines)
        #: The stream's filter (CONTRACT §3, §6): `task_id`, `root_id`, or none (everything).
        self.scope: dict[str, str] = {"task_id": task_id} if task_id is not None else {}
        self.last_seq: int | None = None
        self.final: Json | None = None
        self.interrupted = False
        self.names: dict[str, str] = {}
        #: The active tasks as last heard of (state, progress, message), for their bars.
        self.active: dict[str, Json] = {}

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
        if not self.json_lines:
            self._track(task)
            if task.get("progress") and not self.terminal.tty:
                self.terminal.line(f"{self._who(task)}  {progress_text(task)}")
        return False

    def run(self) -> Json | None:
        try:
            return asyncio.run(self._follow_until_interrupted())
        finally:
            self.terminal.end_bars()

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
            query = dict(self.scope)
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
                        self.terminal.note("reconnected")
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
                self.terminal.note(f"connection lost ({what or 'no reason given'}); reconnecting")
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
            print(json.dumps(event, separators=(",", ":")), file=self.terminal.out, flush=True)
        if kind in ("snapshot", "snapshot_part"):
            # A large snapshot comes in parts (`part` k of `parts`), all of the same seq.
            self.last_seq = int(event.get("seq") or 0)
            tasks: list[Json] = event.get("tasks") or []
            with self.terminal.batch():
                for task in tasks:
                    self._remember(task)
                    if self.json_lines:
                        continue
                    if self.terminal.tty:
                        self._track(task)  # its bar says it all
                    else:
                        self.terminal.line(f"{self._who(task)}  {task.get('state')}  {progress_text(task)}")
            if not tasks and kind == "snapshot" and self.task_id is None and not self.json_lines:
                self.terminal.line("no active tasks; waiting for events (Ctrl-C to stop)")
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
                self._track(task, event.get("task_id"))
                self.terminal.line(self._transition_line(event, task))
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
            task_id = str(event.get("task_id"))
            if self.terminal.tty:
                known = self.active.get(task_id)  # a task that has ended keeps no bar
                if known is not None:
                    self._track({**known, **{k: event[k] for k in PROGRESS_FIELDS if k in event}})
            else:
                self.terminal.line(f"{self._who({}, task_id)}  {progress_text(event)}")
        elif kind == "log" and self.logs:
            who = self._who({}, event.get("task_id"))
            self.terminal.line(f"{who}  {event.get('level')}: {event.get('message')}")
        elif kind == "question":
            question: Json = event.get("question") or {}
            if question.get("status", "pending") == "pending":
                self.terminal.line(f"{self._who({}, event.get('task_id'))}  asks {question_text(question)}")
        return False

    def _transition_line(self, event: Json, task: Json) -> str:  # 14:03:07  1a2b3c4d name  a -> b
        reason = f"  ({event['reason']})" if event.get("reason") else ""
        line = f"{local_time_of_day(event.get('at'))}  {self._who(task, event.get('task_id'))}  "
        return line + f"{event.get('from') or '-'} -> {event.get('to')}{reason}"

    def _track(self, task: Json, task_id: Any = None) -> None:
        """Keeps the bar of an active task up to date (on a terminal), and drops an ended one's."""
        tid = str(task.get("id") or task_id)
        if task.get("state") in _TERMINAL:
            self.active.pop(tid, None)
            self.terminal.drop_bar(tid)
            return
        self.active[tid] = task
        state = str(task.get("state") or "")
        self.terminal.bar(tid, f"{self._who(task, tid)}  {state:<10}  {progress_text(task)}")

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
            text += f"; result {json_excerpt(task['result'], 200)}"
        self.terminal.line(text)


class _Resync(Exception):
    """The server dropped this subscriber for lagging: reconnect with `since`."""
