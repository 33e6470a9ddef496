"""Where a request goes inside taskstate's application, wherever that is mounted."""

from __future__ import annotations

from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """The request's path below the application's mount point: `/api/v2/tasks` for
    `/jobs/api/v2/tasks` when taskstate is mounted at `/jobs` (Starlette keeps the whole path
    in `path` and the mount point in `root_path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path
