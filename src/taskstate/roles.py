"""The roles of API tokens, apart from the web code that checks them: the command line
offers them as choices without importing the server."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"  #: reads tasks, logs, questions and events
    OPERATOR = "operator"  #: also starts, cancels, stops, answers and retries
    ADMIN = "admin"  #: also resets, cleans up, sees workers, manages tokens

    @property
    def rank(self) -> int:
        return list(Role).index(self)
