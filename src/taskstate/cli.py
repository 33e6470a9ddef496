"""The `taskstate` command: run the service, migrate, manage tokens, and drive a server.

The client commands' connection options (--url, --token, --json, --timeout) may come
before the command as well as after it: `taskstate --url X tasks`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Sequence

from taskstate import __version__
from taskstate.client.command_line import add_connection_options
from taskstate.client.commands import add_client_commands
from taskstate.token_cli import add_token_commands


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from taskstate import logconfig
    from taskstate.app import create_app
    from taskstate.config import Settings
    from taskstate.runtime.registry import JobsModuleError
    from taskstate.web.events import WS_PROTOCOL
    from taskstate.web.header_timeout import header_timeout_protocol

    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    settings = Settings()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    # The app answers for the host it is bound to (api/guard.py): tell it the real one.
    settings = settings.model_copy(update={"host": host, "port": port})
    logconfig.configure(args.log_format, args.log_level)
    if settings.jobs_module:
        # As `python -m` does: TASKSTATE_JOBS=myjobs finds myjobs.py in the working directory,
        # which the `taskstate` console script does not otherwise put on the path.
        _put_working_directory_on_path()
    try:
        app = create_app(settings)
    except JobsModuleError as exc:
        print(f"taskstate: error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(
        f"taskstate {__version__} on http://{host}:{port}  (database: {_safe_url(settings.database_url)})",
        flush=True,
    )
    # What the imports and the app's construction made lives as long as the process: out of
    # the collector's sight, a full collection no longer walks it (20-30 ms a time, holding
    # the event loop). Only here, where taskstate owns the process, not when embedded.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=args.log_level,
        log_config=None,
        http=header_timeout_protocol(settings.header_timeout_seconds),
        ws=WS_PROTOCOL,
        ws_max_size=64 * 1024,
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds) + 5),
    )
    return 0


def _put_working_directory_on_path() -> None:
    cwd = os.getcwd()
    if not any(entry in ("", ".", cwd) for entry in sys.path):
        sys.path.insert(0, cwd)


def _migrate(args: argparse.Namespace) -> int:
    from taskstate.config import Settings
    from taskstate.core.db import open_database
    from taskstate.core.migrations import head_revision, upgrade_to_head

    url = args.database_url or Settings().database_url

    async def run() -> None:
        db = open_database(url)
        try:
            await upgrade_to_head(db.writer)
        finally:
            await db.dispose()

    asyncio.run(run())
    print(f"migrated {_safe_url(url)} to {head_revision()}")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def _completion(args: argparse.Namespace) -> int:
    import shtab

    try:
        print(shtab.complete(build_parser(), shell=args.shell, root_prefix="taskstate"))
    except BrokenPipeError:  # `taskstate completion bash | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskstate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"taskstate {__version__}")
    add_connection_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the API, the UI and the supervisor")
    serve.add_argument("--host", help="bind address (TASKSTATE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (TASKSTATE_PORT, default 8000)")
    serve.add_argument("--database-url", help="overrides DATABASE_URL")
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--log-format",
        default="json",
        choices=["json", "text"],
        help="JSON lines (default) or text for people",
    )
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("migrate", help="migrate the database to the newest schema")
    migrate.add_argument("--database-url", help="overrides DATABASE_URL")
    migrate.set_defaults(func=_migrate)
    add_client_commands(commands)
    add_token_commands(commands)

    completion = commands.add_parser(
        "completion",
        help="print a shell completion script: bash, zsh or tcsh",
        description="Print a completion script for SHELL. bash: "
        "`taskstate completion bash > ~/.local/share/bash-completion/completions/taskstate`; "
        'zsh: `taskstate completion zsh > "${fpath[1]}/_taskstate"`.',
    )
    completion.add_argument("shell", metavar="SHELL", choices=["bash", "zsh", "tcsh"])
    completion.set_defaults(func=_completion)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
