"""API tokens and roles (`TASKSTATE_AUTH=tokens`; off by default for the embedded run).

A token is `ts_<id>_<secret>`: the id finds the row, the secret is checked
against its SHA-256 (a random 256-bit secret needs no slow hash). Only the
hash is stored; the token is shown once, when it is created.

Roles are ordered: `viewer` reads, `operator` also starts, cancels, stops,
answers and retries, `admin` also resets, cleans up, sees workers and
manages tokens. A non-admin sees and acts on its own tasks only, unless
TASKSTATE_AUTH_SHARED_TASKS is set.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import sqlalchemy as sa

from taskstate.db import api_tokens, iso, utcnow
from taskstate.errors import Conflict, NotFound, TaskstateError
from taskstate.store import Store
from taskstate.writer import WriteBatch

TOKEN = re.compile(r"ts_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})")


class Role(StrEnum):
    VIEWER = "viewer"  #: reads tasks, logs, questions and events
    OPERATOR = "operator"  #: also starts, cancels, stops, answers and retries
    ADMIN = "admin"  #: also resets, cleans up, sees workers, manages tokens

    @property
    def rank(self) -> int:
        return list(Role).index(self)


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
    return Principal(row["name"], role, sees_all=shared_tasks or role is Role.ADMIN)


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
        return token_public(row)

    return await store.write(op)


def token_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "role": row["role"],
        "created_at": iso(row["created_at"]),
        "revoked": row["revoked_at"] is not None,
    }
