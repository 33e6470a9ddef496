"""`taskstate schedules list|create|pause|resume|delete`: recurring tasks (CONTRACT §6).

Each firing of a schedule creates one task, with `trigger: "scheduled"` and
`trigger_source: "schedule:<id>"` (`taskstate tasks` lists them like any other task).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from taskstate.client.command_line import EPILOG, EXIT_OK, add_param_option, run_with_client
from taskstate.client.formatting import clip, local_datetime, print_json, print_table
from taskstate.client.http import Client, Json, schedule_path

OVERLAP_POLICIES = ("skip", "queue", "cancel_previous")
CATCH_UP_POLICIES = ("none", "latest", "all")


def add_schedule_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """`schedules` and its actions; the connection options go anywhere (`taskstate --url X
    schedules list`, `taskstate schedules --url X list`, `taskstate schedules list --url X`)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(
        "schedules",
        help="recurring tasks: list, create, pause, resume, delete",
        description=__doc__,
        parents=[common],
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        sub = actions.add_parser(
            name, help=help, description=help, parents=[common], epilog=EPILOG, formatter_class=formatter
        )
        sub.set_defaults(func=func)
        return sub

    action("list", "every schedule, with its next and last run", _list)
    create = action("create", "make a schedule", _create)
    create.add_argument("type", metavar="TYPE", help="the job type each firing starts")
    add_param_option(create)
    create.add_argument("--name", help="a name for the schedule (default: its type)")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="a cron expression (5 fields), in --timezone")
    when.add_argument("--every", type=float, metavar="SECONDS", help="fire every SECONDS (at least 1)")
    create.add_argument("--timezone", default="UTC", help="an IANA timezone for --cron (default UTC)")
    create.add_argument(
        "--overlap",
        choices=OVERLAP_POLICIES,
        default="skip",
        help="a firing while the previous firing's task is active: skip it, queue another, "
        "or cancel the previous first (default skip)",
    )
    create.add_argument(
        "--catch-up",
        choices=CATCH_UP_POLICIES,
        default="latest",
        help="firings missed while no instance ran: none, the latest, all (default latest)",
    )
    create.add_argument("--paused", action="store_true", help="create it paused")
    for name, help in (("pause", "stop a schedule firing"), ("resume", "let a paused schedule fire again")):
        action(name, help, _call).add_argument("id", metavar="ID", help="the schedule's id")
    action("delete", "delete a schedule (the tasks it made stay)", _delete).add_argument(
        "id", metavar="ID", help="the schedule's id"
    )


def cadence(schedule: Json) -> str:
    """`every 300s` or `cron 0 3 * * * (Europe/Riga)`."""
    if schedule.get("cron"):
        return f"cron {schedule['cron']} ({schedule.get('timezone') or 'UTC'})"
    seconds = schedule.get("interval_seconds")
    return f"every {seconds:g}s" if isinstance(seconds, int | float) else "-"


def _list(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        page: Json = client.request("GET", "/api/v2/schedules")
        if args.json:
            print_json(page)
            return EXIT_OK
        rows = [
            [
                str(s.get("id")),
                clip(s.get("name"), 24),
                clip(s.get("type"), 20),
                cadence(s),
                "paused" if s.get("paused") else local_datetime(s.get("next_run_at")),
                local_datetime(s.get("last_fired_at")),
                str(s.get("last_task_id") or "-"),
            ]
            for s in page.get("items", [])
        ]
        headers = ["ID", "NAME", "TYPE", "RUNS", "NEXT RUN", "LAST RUN", "LAST TASK"]
        print_table(headers, rows, sys.stdout)
        return EXIT_OK

    return run_with_client(args, run)


def _create(args: argparse.Namespace) -> int:
    body: Json = {
        "type": args.type,
        "params": dict(args.params),
        "timezone": args.timezone,
        "overlap": args.overlap,
        "catch_up": args.catch_up,
        "paused": args.paused,
    }
    if args.name is not None:
        body["name"] = args.name
    if args.cron is not None:
        body["cron"] = args.cron
    else:
        body["interval_seconds"] = args.every

    def run(client: Client) -> int:
        schedule: Json = client.request("POST", "/api/v2/schedules", json=body)
        _show(schedule, args.json, "created")
        return EXIT_OK

    return run_with_client(args, run)


def _call(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        schedule: Json = client.request("POST", schedule_path(args.id, args.action))
        _show(schedule, args.json, "paused" if schedule.get("paused") else "active")
        return EXIT_OK

    return run_with_client(args, run)


def _delete(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        client.request("DELETE", schedule_path(args.id))
        if args.json:
            print_json({"id": args.id, "deleted": True})
        else:
            print(f"{args.id}: deleted")
        return EXIT_OK

    return run_with_client(args, run)


def _show(schedule: Json, as_json: bool, what: str) -> None:
    if as_json:
        print_json(schedule)
        return
    when = "paused" if schedule.get("paused") else f"next run {local_datetime(schedule.get('next_run_at'))}"
    print(f"{schedule['id']}: {what}  ({schedule.get('name')}, {cadence(schedule)}, {when})")
