"""`taskstate serve` as a real subprocess, for the tests that kill it and for the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy

from tests.support.databases import sqlite_write_lock

REPO = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(
    process: subprocess.Popen[bytes], url: str, timeout: float, log_text: Callable[[], str]
) -> float:
    """Until the server `process` started answers 200 on `url`/readyz; answers the seconds
    that took. Fails, with `log_text()`, if it exits first or takes more than `timeout`."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {log_text()}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"server not ready after {timeout}s: {log_text()}")
            await asyncio.sleep(0.05)


def stop_gracefully(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful), SIGKILL if it takes more than 30 s; waits (not async)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class ServerProcess:
    """One `python -m taskstate serve` on a loopback port, with its output in a log file.

    `defaults` is the environment it starts from (the tests' short timeouts and test jobs
    unless given), `env` goes over it; `name` goes into its log files' names.
    """

    #: What a test's server gets unless told otherwise.
    TEST_ENV: Mapping[str, str] = {
        "TASKSTATE_HEARTBEAT_SECONDS": "0.5",
        "TASKSTATE_ORPHAN_AFTER_SECONDS": "2",
        "TASKSTATE_POLL_SECONDS": "0.2",
        "TASKSTATE_SHUTDOWN_GRACE_SECONDS": "1",
        "TASKSTATE_JOBS": "tests.jobs",
    }

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        name: str = "",
        defaults: Mapping[str, str] | None = None,
        **env: Any,
    ) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.name = name
        self.env = {
            **(self.TEST_ENV if defaults is None else defaults),
            **{k: str(v) for k, v in env.items()},
        }
        self.port = free_port()
        self.log_level = "warning"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v2/events"

    @property
    def pid(self) -> int:
        """The server's process id (what the signals go to)."""
        assert self.process is not None
        return self.process.pid

    @property
    def _log_stem(self) -> str:
        return f"server-{self.name}-{self.port}" if self.name else f"server-{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "taskstate",
            "serve",
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
        ]

    async def start(self, timeout: float = 30) -> float:
        """Start it and wait for /readyz; answers the seconds that took."""
        env = {**os.environ, **self.env, "DATABASE_URL": self.database_url, "PYTHONPATH": str(REPO)}
        for key in ("TASKSTATE_PORT", "TASKSTATE_HOST"):  # the command line says where
            env.pop(key, None)
        self.starts += 1
        with open(self.workdir / f"{self._log_stem}-{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return await wait_ready(self.process, self.url, timeout, self.log_text)

    def log_text(self, tail: int | None = 3000) -> str:
        """The end of each run's log (`tail=None`: all of it)."""
        return "\n".join(
            p.read_text(errors="replace")[-tail if tail else 0 :]
            for p in sorted(self.workdir.glob(f"{self._log_stem}-*.log"))
        )

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing gets to clean up."""
        await self._signal(signal.SIGKILL)

    async def terminate(self, timeout: float = 30) -> int:
        """SIGTERM: a graceful shutdown; answers the exit code."""
        return await self._signal(signal.SIGTERM, timeout)

    async def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while self.process.poll() is None:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"server did not exit within {timeout}s")
            await asyncio.sleep(0.02)
        return self.process.returncode

    async def _signal(self, sig: int, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.pid, sig)
        return await self.wait_exit(timeout)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL if it takes more than 30 s; waits (not async)."""
        if self.process is not None:
            stop_gracefully(self.process)

    def pause(self) -> None:
        """SIGSTOP: the process stalls (a long GC pause, a stopped VM), holding what it holds.

        On SQLite an instance stopped inside a write transaction would hold the database's
        one write lock, pausing every instance on the file until it resumes (SQLite's
        nature, not a stall the others can recover from): so the test holds the write lock
        itself while it stops the process, and the process stops outside a transaction.
        """
        assert self.process is not None
        url = sqlalchemy.make_url(self.database_url)
        if url.get_backend_name() != "sqlite":
            self.process.send_signal(signal.SIGSTOP)
            return
        with sqlite_write_lock(str(url.database)):
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
