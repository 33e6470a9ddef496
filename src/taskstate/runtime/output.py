"""A job's buffered output: its progress and log lines, held in memory, written in batches.

Progress is frequent and log lines come in bursts, so the supervisor keeps
them in memory per job and stores every job's pending output in one write
(`store_outputs`), every `TASKSTATE_PROGRESS_FLUSH_SECONDS` and before each
of the job's own transitions. Two promises:

- nothing is lost to a failed write: what was taken for a write that failed
  is given back (`JobOutput.give_back`) and goes with the next one. One write
  of a job's output is in flight at a time, so a job's own last write (before
  its final transition) waits for the periodic one to settle and takes back
  what that one failed to store, instead of racing past it;
- nothing is written for an attempt that lost its task: each job's output is
  stored only while the task's row still names this worker and attempt (the
  row is locked while it is checked), so a job that was orphaned and re-run
  elsewhere can never write its progress or its log lines into the new
  attempt's, nor take the log line numbers the new attempt is using.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from taskstate.core.db import task_logs, tasks
from taskstate.core.states import is_terminal
from taskstate.core.writer import WriteBatch

if TYPE_CHECKING:
    from taskstate.core.store import Store

LEVELS = ("debug", "info", "warning", "error", "critical")
MAX_LOG_MESSAGE = 8192


@dataclass(frozen=True, slots=True)
class LogLine:
    task_id: str
    seq: int
    at: datetime
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    progress: float
    phase: str | None
    message: str | None
    items_processed: int
    items_failed: int
    at: datetime
    #: The child tasks its job waits for and that are still open (CONTRACT §6).
    waiting_for: list[str] | None = None


@dataclass(slots=True)
class PendingOutput:
    """One job's output taken for one write: stored together, or given back together."""

    task_id: str
    worker_id: str
    attempt: int
    progress: ProgressUpdate | None = None
    lines: list[LogLine] = field(default_factory=list)


class JobOutput:
    """What one job reported that the database has not stored yet.

    Log lines are numbered per task, continuing from what the task's earlier
    attempts stored (`log_seq`), so that a task's log reads as one.
    """

    def __init__(self, task_id: str, worker_id: str, attempt: int, log_seq: int) -> None:
        self.task_id = task_id
        self.worker_id = worker_id
        self.attempt = attempt
        self.log_seq = log_seq
        self._lines: list[LogLine] = []
        self._progress: ProgressUpdate | None = None
        self._settled = asyncio.Event()
        self._settled.set()

    def add_line(self, at: datetime, level: str, message: str) -> LogLine:
        level = level.lower() if level.lower() in LEVELS else "info"
        if len(message) > MAX_LOG_MESSAGE:
            message = message[:MAX_LOG_MESSAGE] + f"… [{len(message) - MAX_LOG_MESSAGE} more characters]"
        self.log_seq += 1
        line = LogLine(self.task_id, self.log_seq, at, level, message)
        self._lines.append(line)
        return line

    def set_progress(self, update: ProgressUpdate) -> None:
        self._progress = update

    def take(self) -> PendingOutput | None:
        """Everything pending, for one write; None when there is nothing to write, or
        while an earlier write of this output has not settled (`written`/`give_back`)."""
        if not self._settled.is_set() or (self._progress is None and not self._lines):
            return None
        pending = PendingOutput(self.task_id, self.worker_id, self.attempt, self._progress, self._lines)
        self._progress, self._lines = None, []
        self._settled.clear()
        return pending

    def written(self) -> None:
        """The write of what `take` answered has committed (or found the task lost)."""
        self._settled.set()

    def give_back(self, pending: PendingOutput) -> None:
        """A write failed: what it took goes first in the next one (newer progress wins)."""
        self._lines = pending.lines + self._lines
        if self._progress is None:
            self._progress = pending.progress
        self._settled.set()

    async def settled(self) -> None:
        """Until no write of this output is in flight."""
        await self._settled.wait()


async def write_taken(
    store: Store, taken: Sequence[tuple[JobOutput, PendingOutput]], *, cap: int
) -> set[str]:
    """Store what was taken from each output in one write, and settle each output: what it
    took goes back if the write failed (and the error is raised). Answers the ids of the
    tasks whose attempt lost its task (`store_outputs`)."""
    outputs = [pending for _, pending in taken]
    try:
        lost = await store.write(lambda wb: store_outputs(wb, outputs, cap=cap))
    except BaseException:
        for output, pending in taken:
            output.give_back(pending)
        raise
    for output, _ in taken:
        output.written()
    return lost


async def store_outputs(wb: WriteBatch, outputs: Sequence[PendingOutput], *, cap: int) -> set[str]:
    """Store jobs' pending output in the writer's transaction; answers the ids of the tasks
    whose row no longer names the job's worker and attempt (their output is dropped: the
    attempt lost its task)."""
    if not outputs:
        return set()
    conn = wb.conn
    holders = sa.select(tasks.c.id, tasks.c.worker_id, tasks.c.attempt, tasks.c.state).where(
        tasks.c.id.in_([o.task_id for o in outputs])
    )
    if conn.dialect.name == "postgresql":
        # Locked until commit: a sweeper cannot hand the task to another attempt between
        # this check and the writes below. (SQLite's writer transaction is exclusive.)
        holders = holders.with_for_update()
    rows = {r.id: r for r in (await conn.execute(holders)).all()}
    lost: set[str] = set()
    progress: list[dict[str, Any]] = []
    lines: list[LogLine] = []
    for out in outputs:
        row = rows.get(out.task_id)
        if row is None or row.worker_id != out.worker_id or row.attempt != out.attempt:
            lost.add(out.task_id)
            continue
        # A terminal task keeps the progress its final transition wrote; its job's last
        # log lines (written while it stops) are still its own.
        if out.progress is not None and not is_terminal(row.state):
            p = out.progress
            progress.append(
                {
                    "b_id": out.task_id,
                    "b_progress": p.progress,
                    "b_phase": p.phase,
                    "b_message": p.message,
                    "b_processed": p.items_processed,
                    "b_failed": p.items_failed,
                    "b_waiting": p.waiting_for or None,
                    "b_at": p.at,
                }
            )
        lines.extend(out.lines)
    if progress:
        await conn.execute(_WRITE_PROGRESS, progress)
    if lines:
        await _append_lines(wb, lines, cap)
    return lost


_WRITE_PROGRESS = (
    sa.update(tasks)
    .where(tasks.c.id == sa.bindparam("b_id"))
    .values(
        progress=sa.bindparam("b_progress"),
        phase=sa.bindparam("b_phase"),
        message=sa.bindparam("b_message"),
        items_processed=sa.bindparam("b_processed"),
        items_failed=sa.bindparam("b_failed"),
        waiting_for=sa.bindparam("b_waiting", type_=tasks.c.waiting_for.type),
        heartbeat_at=sa.bindparam("b_at"),
        updated_at=sa.bindparam("b_at"),
    )
)


async def _append_lines(wb: WriteBatch, lines: list[LogLine], cap: int) -> None:
    """Insert the lines, then trim each task to its last `cap` lines with a marker."""
    conn = wb.conn
    # A line is sent again only when a write's outcome was unknown (the connection broke
    # at commit): if that write did commit, the copy is skipped, and the rest still land.
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(task_logs)
    await conn.execute(
        insert.on_conflict_do_nothing(index_elements=["task_id", "seq"]),
        [
            {"task_id": x.task_id, "seq": x.seq, "at": x.at, "level": x.level, "message": x.message}
            for x in lines
        ],
    )
    last: dict[str, LogLine] = {}
    for line in lines:
        last[line.task_id] = line
    for task_id, line in last.items():
        await conn.execute(
            sa.update(tasks).where(tasks.c.id == task_id, tasks.c.log_seq < line.seq).values(log_seq=line.seq)
        )
        cutoff = line.seq - cap
        if cutoff <= 0:
            continue
        dropped = (
            await conn.execute(
                sa.delete(task_logs)
                .where(task_logs.c.task_id == task_id, task_logs.c.seq <= cutoff)
                .returning(task_logs.c.seq)
            )
        ).all()
        if dropped:
            await conn.execute(
                task_logs.insert().values(
                    task_id=task_id,
                    seq=cutoff,
                    at=line.at,
                    level="warning",
                    message=f"[{cutoff} earlier lines dropped: the log keeps the last {cap}]",
                )
            )
