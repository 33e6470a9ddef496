"""`taskstate token create|list|revoke`: API tokens, managed on the database directly.

This is how the first admin token comes to exist: whoever can reach the
database (DATABASE_URL) can mint one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from taskstate.core.errors import TaskstateError
from taskstate.roles import Role

if TYPE_CHECKING:
    from taskstate.core.store import Store


def _with_store(args: argparse.Namespace, work: Callable[[Store], Awaitable[Any]]) -> Any:
    # Imported here, not at the top: every `taskstate` command parses this module's
    # options, and only these need the database (0.4 s of imports on each CLI call).
    from taskstate.config import Settings
    from taskstate.core.bus import EventBus
    from taskstate.core.db import open_database
    from taskstate.core.migrations import upgrade_to_head
    from taskstate.core.store import Store

    async def run() -> Any:
        db = open_database(args.database_url or Settings().database_url)
        store = Store(db, EventBus())
        try:
            await upgrade_to_head(db.writer)
            store.start(tail_seconds=3600)
            return await work(store)
        finally:
            await store.close()
            await db.dispose()

    return asyncio.run(run())


def _create(args: argparse.Namespace) -> int:
    from taskstate.web import auth

    row, token = _with_store(args, lambda store: auth.create_token(store, args.name, Role(args.role)))
    if args.json:
        print(json.dumps({**row, "token": token}))
    else:
        print(f"created token {row['id']} for {row['name']} ({row['role']}); it is shown only this once:")
        print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    from taskstate.web import auth

    rows = _with_store(args, auth.list_tokens)
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        print(f"{row['id']}  {row['role']:<8}  {state:<7}  {row['created_at']}  {row['name']}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from taskstate.web import auth

    row = _with_store(args, lambda store: auth.revoke_token(store, args.id))
    print(json.dumps(row) if args.json else f"revoked {row['id']} ({row['name']})")
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except TaskstateError as exc:
            print(f"error: {exc.detail}", flush=True)
            return 1

    return run


def add_token_commands(commands: Any) -> None:
    token = commands.add_parser("token", help="manage API tokens (TASKSTATE_AUTH=tokens)")
    actions = token.add_subparsers(dest="token_command", required=True)
    for name, func, helptext in (
        ("create", _create, "mint a token; it is printed once"),
        ("list", _list, "list tokens"),
        ("revoke", _revoke, "revoke a token"),
    ):
        parser = actions.add_parser(name, help=helptext)
        parser.add_argument("--database-url", help="overrides DATABASE_URL")
        # No default here: `taskstate --json token list` keeps the --json given before.
        parser.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )
        if name == "create":
            parser.add_argument("--name", required=True, help="who it is for; tasks record it as their owner")
            parser.add_argument("--role", required=True, choices=[r.value for r in Role])
        if name == "revoke":
            parser.add_argument("id")
        parser.set_defaults(func=_guarded(func))
