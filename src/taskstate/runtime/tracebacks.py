"""A failed job's traceback as text, bounded in size so that one task cannot bloat the table.

A job may fail from deep recursion or with a huge message; its traceback could then run to
megabytes. What matters most is at the end (the raising line and the message) and at the
start (how the job got there), so a long one keeps its head and its tail and says, between
them, how much was cut.
"""

from __future__ import annotations

import traceback

#: The most characters a stored traceback holds (its marker included).
MAX_TRACEBACK_CHARS = 16 * 1024
#: Of those, how many come from the start; the rest (and the most) from the end.
HEAD_CHARS = 4 * 1024


def bounded(text: str, limit: int = MAX_TRACEBACK_CHARS, head: int = HEAD_CHARS) -> str:
    """`text`, or its first `head` and last characters around a marker, `limit` at most."""
    if len(text) <= limit:
        return text
    marker_room = 80
    tail = limit - head - marker_room
    cut = len(text) - head - tail
    marker = f"\n[... {cut} characters of the traceback cut ...]\n"
    return text[:head] + marker + text[-tail:]


def format_bounded(exc: BaseException) -> str:
    """The formatted traceback of `exc` (with its causes), bounded by `bounded`."""
    return bounded("".join(traceback.format_exception(exc)))
