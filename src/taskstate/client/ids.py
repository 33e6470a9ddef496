"""Short task ids: the command line prints the first 8 characters of a task's id, and takes
any unique prefix of one back, as git takes a short commit hash.

A prefix is looked up with `GET /api/v2/tasks?id_prefix=` (a range of the primary key, so
cheap at any number of tasks); a full id goes to the server as it is, which answers 404 if
there is no such task.
"""

from __future__ import annotations

import re
import uuid

from taskstate.client.http import Client, ClientError, Json

#: How many candidates an ambiguous prefix is shown with.
SHOWN_CANDIDATES = 10
_PREFIX = re.compile(r"^[0-9a-fA-F][0-9a-fA-F-]{0,35}$")


class AmbiguousId(ClientError):
    """A short id that starts the ids of several tasks (or questions): a usage error (exit 2)."""


def resolve_task_id(client: Client, text: str) -> str:
    """The full id of the one task whose id is `text` or starts with it.

    Raises `ClientError` (code `not_found`) if there is none and `AmbiguousId`, naming
    the candidates, if there are several.
    """
    text = text.strip()
    if len(text) == 36:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
    return _by_prefix(client, text)


def _by_prefix(client: Client, prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise ClientError(
            f"no task has the id {prefix!r}: a task id is a UUID, or the start of one (hex digits)",
            code="not_found",
        )
    page: Json = client.tasks(id_prefix=prefix, limit=SHOWN_CANDIDATES)
    items: list[Json] = page.get("items") or []
    if not items:
        raise ClientError(f"no task has an id starting with {prefix!r}", code="not_found", status=404)
    if len(items) == 1:
        return str(items[0]["id"])
    total = int(page.get("total") or len(items))
    lines = [f"  {t['id']}  {t.get('name')}  ({t.get('state')})" for t in items]
    if total > len(items):
        lines.append(f"  … and {total - len(items)} more")
    raise AmbiguousId(
        f"the short id {prefix!r} is ambiguous: {total} tasks have ids starting with it; "
        "give more of the id:\n" + "\n".join(lines),
        code="ambiguous_id",
    )
