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

import httpx

from taskstate.client.http import DEFAULT_URL, Client, ClientError, Json, ServerUnreachable
from taskstate.client.ids import AmbiguousId
from taskstate.client.watch import DEFAULT_RECONNECT_SECONDS
from taskstate.core.states import State

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_TASK_UNSUCCESSFUL = 4
EXIT_INTERRUPTED = 130

EPILOG = (
    "exit codes: 0 ok, 1 the server refused (or no task has that id), 2 bad usage (or an\n"
    "ambiguous short id), 3 server unreachable, 4 the task ended failed or cancelled\n"
    "(when waiting on it), 130 interrupted"
)

#: add(name, help, func) -> the new subcommand's parser, with the connection options.
AddCommand = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def parse_param(text: str) -> tuple[str, Any]:
    """`k=v`: the value is JSON when it parses as JSON, else the string itself."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, parse_value(raw)


def parse_value(raw: str) -> Any:
    """JSON when it parses as JSON, else the string itself."""
    try:
        return json.loads(raw, parse_constant=_not_json)
    except ValueError:
        return raw  # including NaN and Infinity, which JSON does not have


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


def server_url(text: str) -> str:
    """`--url`'s type: `localhost:8000` is taken as `http://localhost:8000`; a scheme other
    than http(s), or no host, is a usage error (exit 2)."""
    url = text.strip()
    if "://" not in url:
        url = "http://" + url
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"{text!r}: the server's URL is http:// or https://")
    if not parsed.host:
        raise argparse.ArgumentTypeError(f"{text!r}: the server's URL has no host")
    return url


def add_connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """`--url`, `--token`, `--json`, `--timeout`. `taskstate` itself takes them with their
    defaults, and each client command takes them again without (argparse.SUPPRESS): given
    after the command they win, given before it they stay, and `taskstate --url X tasks`
    and `taskstate tasks --url X` mean the same."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        type=server_url,
        default=default(os.environ.get("TASKSTATE_URL") or DEFAULT_URL),
        help=f"the server (TASKSTATE_URL, default {DEFAULT_URL}); http:// if no scheme is given",
    )
    group.add_argument(
        "--token",
        default=default(os.environ.get("TASKSTATE_TOKEN") or None),
        help="API token, sent as 'Authorization: Bearer ...'; prefer TASKSTATE_TOKEN (not shown by ps)",
    )
    group.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON for scripts instead of text"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(30.0),
        metavar="SECONDS",
        help="HTTP request timeout (30)",
    )


def common_options() -> argparse.ArgumentParser:
    """The parent parser of every client command: the connection options, without defaults."""
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common, defaults=False)
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
        if isinstance(exc, AmbiguousId):
            return EXIT_USAGE
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
