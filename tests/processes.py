"""`taskstate serve` as a real subprocess, for tests that kill it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """One `python -m taskstate serve` on a loopback port, with its output in a log file."""

    def __init__(self, database_url: str, workdir: Path, **env: Any) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.env = {
            "TASKSTATE_HEARTBEAT_SECONDS": "0.5",
            "TASKSTATE_ORPHAN_AFTER_SECONDS": "2",
            "TASKSTATE_POLL_SECONDS": "0.2",
            "TASKSTATE_SHUTDOWN_GRACE_SECONDS": "1",
            "TASKSTATE_JOBS": "tests.jobs",
            **{k: str(v) for k, v in env.items()},
        }
        self.port = free_port()
        self.log_level = "warning"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30) -> None:
        env = {
            **os.environ,
            **self.env,
            "DATABASE_URL": self.database_url,
            "PYTHONPATH": str(REPO),
        }
        self.starts += 1
        log = open(self.workdir / f"server-{self.port}-{self.starts}.log", "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskstate",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                self.log_level,
            ],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}: {self.log_text()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"server not ready after {timeout}s: {self.log_text()}")
                await asyncio.sleep(0.05)

    def log_text(self, tail: int | None = 3000) -> str:
        """The end of each run's log (`tail=None`: all of it)."""
        return "\n".join(
            p.read_text(errors="replace")[-tail if tail else 0 :]
            for p in sorted(self.workdir.glob(f"server-{self.port}-*.log"))
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
            self.process.send_signal(sig)
        return await self.wait_exit(timeout)

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
        lock = sqlite3.connect(str(url.database), timeout=30, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            self.process.send_signal(signal.SIGSTOP)
            lock.execute("ROLLBACK")
        finally:
            lock.close()

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
