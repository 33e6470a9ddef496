"""The job types an instance can run: registered `async def run(ctx, params)` functions.

A job is registered under a type name, with its params as a pydantic model (whose JSON
Schema feeds the UI's start form and validates every request). Optional `prepare` and
`collect` hooks run in the `preparing` and `collecting` phases.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from taskstate.core.errors import PayloadTooLarge, UnknownTaskType, ValidationFailed
from taskstate.core.nesting import too_deep, too_deep_message

if TYPE_CHECKING:
    from taskstate.runtime.context import Decision, JobContext, Restoration


class TaskKind(StrEnum):
    BATCH = "batch"  #: runs to completion
    SERVICE = "service"  #: stays up (`serving`) until stopped


class NoParams(BaseModel):
    """A job that takes no params."""

    model_config = ConfigDict(extra="forbid")


RunHandler = Callable[["JobContext", Any], Awaitable[Any]]
PrepareHandler = Callable[["JobContext", Any], Awaitable[None]]
CollectHandler = Callable[["JobContext", Any], Awaitable[Any]]
ValidateHandler = Callable[["JobContext", "Restoration"], Awaitable["Decision"]]


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: RunHandler
    params_model: type[BaseModel]
    description: str
    kind: TaskKind = TaskKind.BATCH
    prepare: PrepareHandler | None = None
    collect: CollectHandler | None = None
    validate: ValidateHandler | None = None


class JobRegistry:
    """The job types this instance can run, by name."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobSpec] = {}

    def register(self, spec: JobSpec) -> JobSpec:
        if spec.name in self._jobs:
            raise ValueError(f"a job named {spec.name!r} is already registered")
        self._jobs[spec.name] = spec
        return spec

    def job(
        self,
        name: str,
        *,
        params: type[BaseModel] = NoParams,
        description: str | None = None,
        kind: TaskKind | str = TaskKind.BATCH,
        prepare: PrepareHandler | None = None,
        collect: CollectHandler | None = None,
        validate: ValidateHandler | None = None,
    ) -> Callable[[RunHandler], RunHandler]:
        """Register the decorated `async def run(ctx, params)` as job type `name`.

        `validate(ctx, restoration)`, if given, decides how a restored run goes on (a
        `Decision`): it sees what the runs before left (`ctx.restoration`)."""

        def decorate(run: RunHandler) -> RunHandler:
            doc = description or (run.__doc__ or "").strip().split("\n\n")[0]
            spec = JobSpec(
                name, run, params, " ".join(doc.split()), TaskKind(kind), prepare, collect, validate
            )
            self.register(spec)
            return run

        return decorate

    def get(self, name: str) -> JobSpec:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownTaskType(f"no job type {name!r} is registered", known=sorted(self._jobs)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def specs(self) -> list[JobSpec]:
        return sorted(self._jobs.values(), key=lambda s: s.name)

    def validate_params(self, name: str, params: dict[str, Any] | None, max_bytes: int) -> dict[str, Any]:
        """The params as the type's model sees them (defaults filled), or a clear error."""
        spec = self.get(name)
        if too_deep(params):
            raise ValidationFailed(too_deep_message("params"))
        try:
            text = json.dumps(params or {}, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            size = len(text.encode())
        except (ValueError, UnicodeEncodeError) as exc:
            # NaN/Infinity (not JSON) or lone surrogates (not Unicode text).
            raise ValidationFailed(f"params are not valid JSON text: {exc}") from None
        if _has_nul(params):
            raise ValidationFailed("params may not contain the character U+0000 (PostgreSQL cannot store it)")
        if size > max_bytes:
            raise PayloadTooLarge(f"params are {size} bytes; the limit is {max_bytes}")
        try:
            model = spec.params_model.model_validate(params or {})
        except ValidationError as exc:
            raise ValidationFailed(
                f"params do not match the schema of {name!r}",
                errors=json.loads(exc.json(include_url=False, include_input=False)),
            ) from None
        return model.model_dump(mode="json")

    def load_module(self, path: str) -> None:
        """Import the user's jobs module; it registers its jobs on `registry` (or exposes `register`).

        Whatever goes wrong (no such module, a syntax error, an exception while it is imported
        or registers) is one `JobsModuleError` that names the module, the reason and the
        working directory: the operator's mistake is in their module, not in taskstate.
        """
        try:
            module = importlib.import_module(path)
            register = getattr(module, "register", None)
            if callable(register):
                register(self)
        except Exception as exc:
            raise JobsModuleError(
                f"cannot load the jobs module {path!r} (TASKSTATE_JOBS): {_reason(exc)}"
                f" (working directory: {os.getcwd()})"
            ) from exc


class JobsModuleError(Exception):
    """The TASKSTATE_JOBS module cannot be imported, or it failed to register its jobs."""


def _reason(exc: Exception) -> str:
    """The exception as one line: its class and message (a syntax error's file and line)."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else f"line {exc.lineno}"
        text = f"{type(exc).__name__}: {exc.msg} ({where})"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


def _has_nul(value: Any) -> bool:
    """Whether any string in `value` (key or value) holds U+0000; iterative, as params may be deep."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
