"""Recurring tasks: schedules, and their firings, each creating its task exactly once.

A schedule fires on a cron expression (in its timezone; cronsim, which computes the
next time across daylight-saving changes as cron does) or every `interval_seconds`.
Every instance's supervisor looks for due schedules; each firing creates its task
under an idempotency key made of the schedule and the firing's time, so that two
instances, a restart or a retry after a lost connection never create it twice (and
on PostgreSQL a due schedule is also locked, `SKIP LOCKED`, while one instance fires
it). Firings missed while no instance ran follow `catch_up`: `none` skips them, `latest`
fires the newest one, `all` fires each (at most MAX_CATCH_UP). `overlap` decides what a
firing does while the previous firing's task is still active: `skip` it, `queue` another,
or `cancel_previous` first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from cronsim import CronSim, CronSimError

from taskstate.core import creation
from taskstate.core.bus import Event
from taskstate.core.creation import NewTask
from taskstate.core.db import iso_or_none, schedules, tasks, utcnow
from taskstate.core.errors import NotFound, ValidationFailed
from taskstate.core.states import RESET_TO, State, is_terminal
from taskstate.core.store import Store, apply_transition
from taskstate.core.writer import WriteBatch

OVERLAPS = ("skip", "queue", "cancel_previous")
CATCH_UPS = ("none", "latest", "all")
#: Firings a schedule makes up for at once with `catch_up: all`.
MAX_CATCH_UP = 100
#: A firing older than this when an instance gets to it counts as missed (`catch_up`).
ON_TIME = timedelta(seconds=60)
#: Due schedules one pass fires (the rest in the next pass).
BATCH = 50


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule fires: a cron expression or an interval, in a timezone."""

    cron: str | None
    interval_seconds: float | None
    timezone: str

    def check(self) -> None:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValidationFailed("a schedule needs exactly one of cron and interval_seconds", field="cron")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationFailed(f"unknown timezone {self.timezone!r}", field="timezone") from None
        if self.cron is not None:
            try:
                CronSim(self.cron, utcnow().astimezone(zone))
            except CronSimError as exc:
                raise ValidationFailed(f"cron {self.cron!r}: {exc}", field="cron") from None
        elif self.interval_seconds is not None and self.interval_seconds < 1:
            raise ValidationFailed("interval_seconds must be at least 1", field="interval_seconds")

    def after(self, moment: datetime, anchor: datetime) -> Iterator[datetime]:
        """The firing times after `moment`, in order (an interval counts from `anchor`)."""
        if self.cron is not None:
            for at in CronSim(self.cron, moment.astimezone(ZoneInfo(self.timezone))):
                yield at.astimezone(moment.tzinfo)
            return
        assert self.interval_seconds is not None
        step = timedelta(seconds=self.interval_seconds)
        at = anchor + step * max(0, int((moment - anchor) / step))
        while True:
            if at > moment:
                yield at
            at += step


def timing_of(row: Mapping[Any, Any]) -> Timing:
    return Timing(row["cron"], row["interval_seconds"], row["timezone"])


def payload(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "params": row["params"],
        "cron": row["cron"],
        "interval_seconds": row["interval_seconds"],
        "timezone": row["timezone"],
        "overlap": row["overlap"],
        "catch_up": row["catch_up"],
        "paused": row["paused"],
        "next_run_at": iso_or_none(row["next_run_at"]),
        "last_fired_at": iso_or_none(row["last_fired_at"]),
        "last_task_id": row["last_task_id"],
        "owner": row["owner"],
        "created_at": iso_or_none(row["created_at"]),
        "updated_at": iso_or_none(row["updated_at"]),
    }


def _event(row: Mapping[Any, Any], deleted: bool = False) -> Event:
    body = {"id": row["id"], "deleted": True} if deleted else payload(row)
    return Event.of({"type": "schedule", "task_id": "", "schedule": body})


async def create(store: Store, values: dict[str, Any]) -> dict[str, Any]:
    """A new schedule; `values` are checked already (type and params too)."""
    timing = Timing(values.get("cron"), values.get("interval_seconds"), values["timezone"])
    timing.check()
    now = utcnow()
    row = {
        "id": str(uuid.uuid4()),
        **values,
        "created_at": now,
        "updated_at": now,
        "next_run_at": None if values.get("paused") else next(timing.after(now, now)),
        "last_fired_at": None,
        "last_task_id": None,
    }

    async def op(wb: WriteBatch) -> dict[str, Any]:
        await wb.conn.execute(schedules.insert().values(**row))
        wb.live_events.append(_event(row))
        return payload(row)

    return await store.write(op)


async def list_all(store: Store, owner: str | None) -> list[dict[str, Any]]:
    query = sa.select(schedules).order_by(schedules.c.created_at)
    if owner is not None:
        query = query.where(schedules.c.owner == owner)
    async with store.db.reader.connect() as conn:
        return [payload(r) for r in (await conn.execute(query)).mappings().all()]


async def get_row(store: Store, schedule_id: str) -> Mapping[Any, Any]:
    async with store.db.reader.connect() as conn:
        row = (
            (await conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id))).mappings().first()
        )
    if row is None:
        raise NotFound(f"no schedule with id {schedule_id!r}")
    return row


async def update(store: Store, schedule_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a schedule (pausing and resuming too); its next run is computed anew."""

    async def op(wb: WriteBatch) -> dict[str, Any]:
        row = (
            (await wb.conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id)))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"no schedule with id {schedule_id!r}")
        merged = {**row, **changes}
        if "cron" in changes and changes["cron"] is not None:
            merged["interval_seconds"] = None
        if "interval_seconds" in changes and changes["interval_seconds"] is not None:
            merged["cron"] = None
        timing = timing_of(merged)
        timing.check()
        now = utcnow()
        merged["updated_at"] = now
        merged["next_run_at"] = None if merged["paused"] else next(timing.after(now, merged["created_at"]))
        values = {k: merged[k] for k in (*changes, "cron", "interval_seconds", "updated_at", "next_run_at")}
        await wb.conn.execute(sa.update(schedules).where(schedules.c.id == schedule_id).values(**values))
        wb.live_events.append(_event(merged))
        return payload(merged)

    return await store.write(op)


async def delete(store: Store, schedule_id: str) -> None:
    async def op(wb: WriteBatch) -> None:
        gone = await wb.conn.execute(
            sa.delete(schedules).where(schedules.c.id == schedule_id).returning(schedules.c.id)
        )
        if gone.first() is None:
            raise NotFound(f"no schedule with id {schedule_id!r}")
        wb.live_events.append(_event({"id": schedule_id}, deleted=True))

    await store.write(op)


async def fire_due(store: Store, *, actor: str) -> int:
    """Fire every due schedule (up to BATCH); answers how many tasks it created.

    A read first: most passes find nothing due, and a read costs no write transaction.
    """
    any_due = (
        sa.select(schedules.c.id).where(~schedules.c.paused, schedules.c.next_run_at <= utcnow()).limit(1)
    )
    async with store.db.reader.connect() as conn:
        if (await conn.execute(any_due)).first() is None:
            return 0

    async def op(wb: WriteBatch) -> int:
        now = utcnow()
        due = (
            sa.select(schedules)
            .where(~schedules.c.paused, schedules.c.next_run_at <= now)
            .order_by(schedules.c.next_run_at)
            .limit(BATCH)
        )
        if wb.conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        created = 0
        for row in (await wb.conn.execute(due)).mappings().all():
            created += await _fire(wb, row, now, actor)
        return created

    return await store.write(op)


async def _fire(wb: WriteBatch, row: Mapping[Any, Any], now: datetime, actor: str) -> int:
    timing = timing_of(row)
    first = row["next_run_at"]
    missed = [first]
    for at in timing.after(first, row["created_at"]):
        if at > now or len(missed) >= MAX_CATCH_UP:
            break
        missed.append(at)
    on_time = [at for at in missed if now - at <= ON_TIME]
    if row["catch_up"] == "all":
        firings = missed
    elif row["catch_up"] == "latest":
        firings = missed[-1:]
    else:
        firings = on_time[-1:]
    created = 0
    last_task_id = row["last_task_id"]
    for at in firings:
        previous = await _active_state(wb, last_task_id)
        if previous is not None and row["overlap"] == "skip":
            continue
        if previous is not None and row["overlap"] == "cancel_previous":
            assert last_task_id is not None
            reason = f"schedule_overlap: {row['id']}"
            await apply_transition(wb, last_task_id, RESET_TO[previous], reason, actor, None, {}, previous)
        new = NewTask(
            type=row["type"],
            params=row["params"],
            name=row["name"],
            trigger="scheduled",
            trigger_source=f"schedule:{row['id']}",
            idempotency_key=f"schedule:{row['id']}:{at.isoformat()}",
            owner=row["owner"],
        )
        [result] = await creation.create(wb, [new], actor)
        last_task_id = result.task["id"]
        created += int(result.created)
    following = next(timing.after(max(now, missed[-1]), row["created_at"]))
    values = {"next_run_at": following, "last_fired_at": firings[-1] if firings else row["last_fired_at"]}
    values["last_task_id"] = last_task_id
    await wb.conn.execute(sa.update(schedules).where(schedules.c.id == row["id"]).values(**values))
    wb.live_events.append(_event({**row, **values, "updated_at": row["updated_at"]}))
    return created


async def _active_state(wb: WriteBatch, task_id: str | None) -> State | None:
    """The state of the previous firing's task while it is active, else None."""
    if task_id is None:
        return None
    state = (await wb.conn.execute(sa.select(tasks.c.state).where(tasks.c.id == task_id))).scalar()
    return State(state) if state is not None and not is_terminal(state) else None
