"""`taskstate reset`: the emergency reset (`POST /api/v2/admin/reset`, an admin's call).

Every task that has not ended is cancelled and every job stopped, on every instance: it asks
first, showing how many tasks that is, unless `--yes`. Without a terminal to ask on (a
script, a pipe) and without `--yes` it refuses, as a usage error: nothing is reset.
"""

from __future__ import annotations

import argparse
import sys

from taskstate.client.command_line import EXIT_OK, EXIT_USAGE, AddCommand, run_with_client
from taskstate.client.formatting import print_json
from taskstate.client.http import Client, Json
from taskstate.core.states import TERMINAL_STATES, State

#: What a person types to confirm.
CONFIRMATION = "reset"
#: The exit code of a reset that was not confirmed: nothing was done.
EXIT_NOT_CONFIRMED = 1


def add_reset_command(add: AddCommand) -> None:
    reset = add(
        "reset",
        "emergency reset: cancel every task that has not ended and stop every job (admin)",
        _reset,
    )
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _active_count(client: Client) -> int:
    states = [("state", s.value) for s in State if s not in TERMINAL_STATES]
    page: Json = client.request("GET", "/api/v2/tasks", params=[*states, ("limit", 1)])
    return int(page.get("total") or 0)


def _confirmed(active: int) -> bool:
    print(
        f"This cancels all {active} task{'s' if active != 1 else ''} that have not ended and stops "
        f"their jobs, on every instance.\nType {CONFIRMATION!r} to go on: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    return answer.strip() == CONFIRMATION


def _reset(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    "taskstate: error: reset asks for confirmation on a terminal; "
                    "pass --yes to reset without asking",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            if not _confirmed(_active_count(client)):
                print("taskstate: not confirmed; nothing was reset", file=sys.stderr)
                return EXIT_NOT_CONFIRMED
        result: Json = client.request("POST", "/api/v2/admin/reset")
        if args.json:
            print_json(result)
        else:
            count = int(result.get("reset") or 0)
            print(f"reset: {count} task{'s' if count != 1 else ''} ended")
        return EXIT_OK

    return run_with_client(args, run)
