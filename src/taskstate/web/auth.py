"""API tokens and roles (`TASKSTATE_AUTH=tokens`; off by default for the embedded run).

A token is `ts_<id>_<secret>`: the id finds the row, the secret is checked
against its SHA-256 (a random 256-bit secret needs no slow hash). Only the
hash is stored; the token is shown once, when it is created.

Roles are ordered: `viewer` reads, `operator` also starts, cancels, stops,
answers and retries, `admin` also resets, cleans up, sees workers and
manages tokens. A non-admin sees and acts on its own tasks only, unless
TASKSTATE_AUTH_SHARED_TASKS is set.

An HTTP request is checked against the database every time; a WebSocket only
when it opens, so `RevocationWatch` ends the sockets of a token once it is
revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa

from taskstate.core.bus import TOKEN_REVOKED, Event
from taskstate.core.db import api_tokens, iso, utcnow
from taskstate.core.errors import Conflict, NotFound, TaskstateError
from taskstate.core.store import Store
from taskstate.core.writer import WriteBatch
from taskstate.roles import Role as Role  # re-exported: where the roles are checked

log = logging.getLogger(__name__)

TOKEN = re.compile(r"ts_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})")


class Unauthorized(TaskstateError):
    """A valid API token is required: `Authorization: Bearer <token>`."""

    code = "unauthorized"
    status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(TaskstateError):
    """This token's role or owner does not allow it."""

    code = "forbidden"
    status = 403


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking. With auth off, an anonymous admin."""

    name: str | None
    role: Role
    sees_all: bool
    #: The token it authenticated with (None with auth off).
    token_id: str | None = None

    def require(self, role: Role) -> None:
        if self.role.rank < role.rank:
            raise Forbidden(f"this needs the {role.value} role; the token is {self.role.value}")

    def check_owner(self, owner: str | None) -> None:
        if not self.sees_all and owner != self.name:
            raise Forbidden("this task belongs to someone else")

    @property
    def owner_filter(self) -> str | None:
        """The owner to restrict listings to, or None for everything."""
        return None if self.sees_all else self.name


ANONYMOUS = Principal(None, Role.ADMIN, sees_all=True)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def authenticate(store: Store, raw: str | None, *, shared_tasks: bool) -> Principal:
    """The principal of a token, or `Unauthorized`."""
    match = TOKEN.fullmatch(raw or "")
    if match is None:
        raise Unauthorized()
    token_id, secret = match.groups()
    async with store.db.reader.connect() as conn:
        row = (
            (await conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id))).mappings().first()
        )
    if (
        row is None
        or row["revoked_at"] is not None
        or not hmac.compare_digest(row["secret_hash"], _hash(secret))
    ):
        raise Unauthorized("the token is unknown or revoked")
    role = Role(row["role"])
    return Principal(row["name"], role, sees_all=shared_tasks or role is Role.ADMIN, token_id=token_id)


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


async def create_token(store: Store, name: str, role: Role) -> tuple[dict[str, Any], str]:
    """A new token; the returned secret string is the only copy there will ever be."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = {
        "id": token_id,
        "name": name,
        "role": role.value,
        "secret_hash": _hash(secret),
        "created_at": utcnow(),
        "revoked_at": None,
    }

    async def op(wb: WriteBatch) -> None:
        taken = (await wb.conn.execute(sa.select(api_tokens.c.id).where(api_tokens.c.name == name))).first()
        if taken is not None:
            raise Conflict(f"a token named {name!r} exists already")
        await wb.conn.execute(api_tokens.insert().values(**row))

    await store.write(op)
    return token_public(row), f"ts_{token_id}_{secret}"


async def list_tokens(store: Store) -> list[dict[str, Any]]:
    async with store.db.reader.connect() as conn:
        rows = (await conn.execute(sa.select(api_tokens).order_by(api_tokens.c.created_at))).mappings().all()
    return [token_public(r) for r in rows]


async def revoke_token(store: Store, token_id: str) -> dict[str, Any]:
    async def op(wb: WriteBatch) -> dict[str, Any]:
        row = (
            (
                await wb.conn.execute(
                    sa.update(api_tokens)
                    .where(api_tokens.c.id == token_id)
                    .values(revoked_at=sa.func.coalesce(api_tokens.c.revoked_at, utcnow()))
                    .returning(*api_tokens.c)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"no token with id {token_id!r}")
        # Published once committed; the bus forwards it to the other instances.
        wb.live_events.append(Event.of({"type": TOKEN_REVOKED, "task_id": "", "token_id": token_id}))
        return token_public(row)

    return await store.write(op)


class RevocationWatch:
    """The open WebSockets of each token, ended when the token is revoked.

    `revoke_token` publishes `token_revoked`: sockets on this instance hear it at once, those
    on other instances through the bus's forwarder (PostgreSQL NOTIFY) within milliseconds.
    The safety net is a check of every watched token every `recheck_seconds`, one query per
    instance however many sockets are open: it catches a lost notification, a revocation
    committed between a socket's authentication and its watch, and `taskstate token revoke`,
    which writes to the database without a server's bus.
    """

    def __init__(self, store: Store, recheck_seconds: float) -> None:
        self._store = store
        self._recheck_seconds = recheck_seconds
        self._sessions: dict[str, set[Callable[[], None]]] = {}
        self._checker: asyncio.Task[None] | None = None
        store.bus.add_listener(self._on_event)

    @contextlib.contextmanager
    def watch(self, token_id: str | None, on_revoked: Callable[[], None]) -> Iterator[None]:
        """Call `on_revoked` once `token_id` is revoked (never, for None: auth is off). A
        callback, not an event and a task waiting on it, per idle subscriber."""
        if token_id is None:
            yield
            return
        sessions = self._sessions.setdefault(token_id, set())
        sessions.add(on_revoked)
        try:
            yield
        finally:
            sessions.discard(on_revoked)
            if not sessions:
                self._sessions.pop(token_id, None)

    def revoked(self, token_id: str) -> None:
        for on_revoked in list(self._sessions.get(token_id, ())):
            on_revoked()

    def _on_event(self, event: Event) -> None:
        if event.type == TOKEN_REVOKED:
            self.revoked(str(event.payload.get("token_id")))

    async def check(self) -> None:
        """Revoke, here, every watched token that the database no longer accepts."""
        watched = list(self._sessions)
        if not watched:
            return
        async with self._store.db.reader.connect() as conn:
            query = sa.select(api_tokens.c.id).where(
                api_tokens.c.id.in_(watched), api_tokens.c.revoked_at.is_(None)
            )
            valid = set((await conn.execute(query)).scalars())
        for token_id in set(watched) - valid:
            self.revoked(token_id)

    def start(self) -> None:
        if self._checker is None:
            self._checker = asyncio.create_task(self._check_loop(), name="taskstate-token-recheck")

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self._recheck_seconds)
            try:
                await self.check()
            except Exception:
                log.warning("checking the tokens of open WebSockets failed", exc_info=True)

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None


def token_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "role": row["role"],
        "created_at": iso(row["created_at"]),
        "revoked": row["revoked_at"] is not None,
    }
