"""What every client command shares: its exit codes, its connection options, `KEY=VALUE`
parameters, and running its body against a `Client` with errors turned into exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from taskstate.client.http import DEFAULT_URL, Client, ClientError, Json, ServerUnreachable
from taskstate.client.watch import DEFAULT_RECONNECT_SECONDS
from taskstate.core.states import State

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_UNREACHABLE = 3
EXIT_TASK_UNSUCCESSFUL = 4
EXIT_INTERRUPTED = 130

EPILOG = (
    "exit codes: 0 ok, 1 the server refused, 2 bad usage, 3 server unreachable,\n"
    "4 the task ended failed or cancelled (when waiting on it)"
)

#: add(name, help, func) -> the new subcommand's parser, with the connection options.
AddCommand = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def parse_param(text: str) -> tuple[str, Any]:
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


def add_param_option(parser: argparse.ArgumentParser) -> None:
    """`-p/--param KEY=VALUE`, repeatable, into `args.params`."""
    parser.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=parse_param,
        default=[],
        metavar="KEY=VALUE",
        help="a parameter; VALUE is read as JSON if it parses (5, true, [1,2]), else as a string",
    )


def add_reconnect_option(parser: argparse.ArgumentParser, *, when: str = "") -> None:
    """`--reconnect-for SECONDS`, for the commands that follow the event stream."""
    parser.add_argument(
        "--reconnect-for",
        type=float,
        default=DEFAULT_RECONNECT_SECONDS,
        metavar="SECONDS",
        help=f"{when}how long to keep trying to reconnect after the connection drops (60)",
    )


def common_options() -> argparse.ArgumentParser:
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


def _quiet_libraries() -> None:
    # `taskstate` configures logging at INFO for `serve`; a client's output is its own.
    for name in ("httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_with_client(args: argparse.Namespace, body: Callable[[Client], int]) -> int:
    """Runs `body` with a client of `args.url`; a refusal, an unreachable server, Ctrl-C and a
    closed pipe become their exit codes (and a line on stderr)."""
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


def outcome(task: Json | None) -> int:
    """The exit code of a command that waited on a task: 0 if it completed, else 4."""
    return EXIT_OK if task is not None and task.get("state") == State.COMPLETED else EXIT_TASK_UNSUCCESSFUL
