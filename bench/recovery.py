"""Recovery: SIGKILL an instance with 100 tasks in flight, start it again at once.

The instance runs with MAX_CONCURRENT_TASKS=100, TASKSTATE_HEARTBEAT_SECONDS=1 and
TASKSTATE_ORPHAN_AFTER_SECONDS=3 (the defaults, 5 and 30, would make it ~10 times slower by
design). The tasks are demo.sleep of 2 s in 2 steps, all `running` when the instance is
killed. Measured from the SIGKILL, with the rows' own timestamps: until the restarted
instance is ready, until every task is back in `queued` (the sweeper's `worker_lost`
transition), and until every task is `completed` (which includes the job's own 2 s).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from bench.common import Results, Server, TaskDb, as_epoch, log, submit_batches, task_bodies
from bench.latency import database

IN_FLIGHT = 100
SLEEP = {"seconds": 2, "steps": 2}
ENV = {
    "MAX_CONCURRENT_TASKS": IN_FLIGHT,
    "TASKSTATE_HEARTBEAT_SECONDS": 1,
    "TASKSTATE_ORPHAN_AFTER_SECONDS": 3,
}


async def recovery(results: Results, backend: str, workdir: Path) -> None:
    async with database(backend, workdir, "recovery") as url:
        where = url.rsplit("/", 1)[1] if backend == "postgres" else url.split(":///", 1)[1]
        first = Server(url, workdir, f"recovery-{backend}-a", **ENV)
        second = Server(url, workdir, f"recovery-{backend}-b", **ENV)
        await first.start()
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=60) as client:
                await submit_batches([client], task_bodies(IN_FLIGHT, "demo.sleep", params=SLEEP))
            async with TaskDb(backend, where) as db:
                await db.wait_until("SELECT count(*) FROM tasks WHERE state = 'running'", IN_FLIGHT, 30, 0.02)
                await first.kill()
                killed = time.time()
                held = int(await db.scalar("SELECT count(*) FROM tasks WHERE state = 'running'"))
                assert held == IN_FLIGHT, f"only {held} of {IN_FLIGHT} tasks were running at the kill"
                await second.start()
                ready_at = time.time()
                await db.wait_until(
                    "SELECT count(DISTINCT task_id) FROM transitions "
                    "WHERE to_state = 'queued' AND reason = 'worker_lost'",
                    IN_FLIGHT,
                    60,
                )
                await db.wait_until("SELECT count(*) FROM tasks WHERE state = 'completed'", IN_FLIGHT, 60)
                requeued = as_epoch(
                    await db.scalar(
                        "SELECT max(at) FROM transitions WHERE to_state = 'queued' AND reason = 'worker_lost'"
                    )
                )
                completed = as_epoch(await db.scalar("SELECT max(finished_at) FROM tasks"))
                attempts = await db.fetch("SELECT attempt, count(*) FROM tasks GROUP BY attempt")
                assert dict(attempts) == {2: IN_FLIGHT}, attempts
        except Exception:
            log(f"recovery {backend} logs:\n{first.log_text()}\n{second.log_text()}")
            raise
        finally:
            first.stop()
            second.stop()
        label = f"recovery of {IN_FLIGHT} in-flight tasks after SIGKILL, {backend}"
        results.add(
            f"recovery.{backend}.restart_ready_s", ready_at - killed, "s", f"{label}: restarted, ready"
        )
        results.add(f"recovery.{backend}.all_requeued_s", requeued - killed, "s", f"{label}: all re-queued")
        results.add(f"recovery.{backend}.all_completed_s", completed - killed, "s", f"{label}: all completed")
