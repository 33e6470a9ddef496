"""The exceptions taskstate raises.

One root, `TaskstateError`; each subclass carries the wire `code` and HTTP
`status` that the API's single exception handler turns into the contract's
error shape (`{"error": code, "detail": text, ...}`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class TaskstateError(Exception):
    """Something went wrong in taskstate."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or (self.__doc__ or self.code).strip()
        self.extra = extra
        super().__init__(self.detail)

    def to_body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class NotFound(TaskstateError):
    """No such resource."""

    code = "not_found"
    status = 404


class InvalidTransition(TaskstateError):
    """The transition table does not allow this transition."""

    code = "invalid_transition"
    status = 409

    def __init__(self, from_state: str, to_state: str, detail: str | None = None) -> None:
        self.from_state = from_state
        self.to_state = to_state
        super().__init__(
            detail or f"a task in state {from_state!r} cannot go to {to_state!r}",
            **{"from": from_state, "to": to_state},
        )


class Conflict(TaskstateError):
    """The request conflicts with the resource's current state."""

    code = "conflict"
    status = 409


class IdempotencyConflict(TaskstateError):
    """This idempotency key was used for a task of another type or with other params."""

    code = "idempotency_conflict"
    status = 409

    def __init__(self, detail: str | None = None, *, index: int = 0, **extra: Any) -> None:
        #: Which of the requested tasks it is (a batch names it).
        self.index = index
        super().__init__(detail, **extra)


class ValidationFailed(TaskstateError):
    """The request is not valid."""

    code = "validation_error"
    status = 422


class InvalidDependency(ValidationFailed):
    """A task of `depends_on` does not exist, belongs to someone else, or closes a cycle."""

    def __init__(self, detail: str | None = None, *, index: int = 0, **extra: Any) -> None:
        #: Which of the requested tasks it is (a batch names it).
        self.index = index
        super().__init__(detail, field="depends_on", **extra)


class UnknownTaskType(TaskstateError):
    """No job is registered under this task type."""

    code = "unknown_task_type"
    status = 422


class PayloadTooLarge(TaskstateError):
    """The request body or the params are larger than the limit."""

    code = "payload_too_large"
    status = 413


class ServiceUnavailable(TaskstateError):
    """The service cannot answer now."""

    code = "unavailable"
    status = 503
