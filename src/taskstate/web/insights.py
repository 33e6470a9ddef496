"""`GET /api/v2/insights`: the query's window and buckets, checked, and the aggregates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from taskstate.core.db import utcnow
from taskstate.core.errors import ValidationFailed
from taskstate.core.insights import EPOCH, US, Insights, InsightsQuery, epoch_micros
from taskstate.web.deps import ServicesDep, ViewerDep
from taskstate.web.error_responses import error_responses
from taskstate.web.schemas import NO_NUL
from taskstate.web.schemas import Insights as InsightsModel

router = APIRouter(tags=["insights"])

#: The widest window one request may cover, and the most buckets it may be cut into:
#: what keeps a request's cost bounded whatever the table's size.
MAX_WINDOW = timedelta(days=31)
MAX_BUCKETS = 1000
DEFAULT_WINDOW = timedelta(hours=24)
#: The default interval: the first of these that cuts the window into at most 120 buckets.
NICE_INTERVALS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_SPAN = re.compile(r"^(\d{1,7})([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_span(text: str, field: str) -> int:
    """`90`, `90s`, `15m`, `24h`, `7d` in whole seconds (at least one)."""
    match = _SPAN.match(text.strip())
    seconds = int(match.group(1)) * _UNIT[match.group(2)] if match else 0
    if seconds < 1:
        raise ValidationFailed(
            f"{field}: {text[:40]!r} is not a duration like 90s, 15m, 24h or 7d", field=field
        )
    return seconds


def _instant(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
        value - EPOCH
    except OverflowError:
        raise ValidationFailed(f"{field}: {value.isoformat()} is out of range", field=field) from None
    if value < EPOCH:
        raise ValidationFailed(f"{field}: {value.isoformat()} is before 1970", field=field)
    return value


def window_of(
    since: datetime | None, until: datetime | None, window: str | None, interval: str | None, now: datetime
) -> tuple[datetime, datetime, int]:
    """`[since, until)` and the interval, from the query: any two of since, until and window
    (until defaults to now, window to 24 hours); both ends widened to whole buckets."""
    if since is not None and until is not None and window is not None:
        raise ValidationFailed("give at most two of since, until and window", field="window")
    span = timedelta(seconds=parse_span(window, "window")) if window is not None else None
    if span is not None and span > MAX_WINDOW:
        raise ValidationFailed(f"window: at most {MAX_WINDOW.days} days", field="window")
    start = _instant(since, "since") if since is not None else None
    end = _instant(until, "until") if until is not None else None
    try:
        if start is None:
            end = end or now
            start = end - (span or DEFAULT_WINDOW)
        elif end is None:
            end = start + span if span is not None else now
    except OverflowError:
        raise ValidationFailed("the window is out of range", field="window") from None
    if start >= end:
        raise ValidationFailed("since must be before until", field="since")
    if end - start > MAX_WINDOW:
        raise ValidationFailed(f"the window may span at most {MAX_WINDOW.days} days", field="since")
    if start < EPOCH:
        raise ValidationFailed("the window starts before 1970", field="since")
    length = (end - start).total_seconds()
    if interval is not None:
        step = parse_span(interval, "interval")
    else:
        step = next((s for s in NICE_INTERVALS if length / s <= 120), NICE_INTERVALS[-1])
    if step > MAX_WINDOW.total_seconds():
        raise ValidationFailed(f"interval: at most {MAX_WINDOW.days} days", field="interval")
    step_us = step * US
    first = (epoch_micros(start) // step_us) * step_us
    last = -(-epoch_micros(end) // step_us) * step_us
    if (last - first) // step_us > MAX_BUCKETS:
        raise ValidationFailed(
            f"interval: {step} s cuts the window into more than {MAX_BUCKETS} buckets", field="interval"
        )
    try:
        return EPOCH + timedelta(microseconds=first), EPOCH + timedelta(microseconds=last), step
    except OverflowError:
        raise ValidationFailed("the window is out of range", field="until") from None


@router.get(
    "/api/v2/insights",
    operation_id="get_insights",
    response_model=InsightsModel,
    responses=error_responses(401, 422, 503),
)
async def get_insights(
    services: ServicesDep,
    principal: ViewerDep,
    since: Annotated[datetime | None, Query(description="Start of the window (inclusive).")] = None,
    until: Annotated[
        datetime | None, Query(description="End of the window (exclusive); default now.")
    ] = None,
    window: Annotated[
        str | None,
        Query(
            max_length=20, description="The window's length, like `90s`, `15m`, `24h`, `7d` (default 24h)."
        ),
    ] = None,
    interval: Annotated[
        str | None,
        Query(max_length=20, description="The bucket length, same syntax; default: at most 120 buckets."),
    ] = None,
    type: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Only tasks of this type.")
    ] = None,
) -> dict[str, Any]:
    """Throughput per bucket (tasks finished, by end state), outcomes by type, duration
    percentiles by type (p50/p95/p99, nearest rank) and the queue over time (depth, arrivals,
    starts, waits), over a window of at most 31 days cut into at most 1000 buckets aligned
    to multiples of the interval. With auth on, a token that does not see all tasks gets
    the aggregates of its own."""
    start, end, step = window_of(since, until, window, interval, utcnow())
    query = InsightsQuery(start, end, step, type=type, owner=principal.owner_filter)
    return await Insights(services.reads.db).compute(query)
