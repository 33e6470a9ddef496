"""Who a worker is: its id (host, process, a random part, so that a restarted process on
the same host is a new worker) and the facts of the run report's `system_info`."""

from __future__ import annotations

import os
import platform
import socket
import sys
import uuid
from typing import Any

from taskstate import __version__


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def system_info() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "taskstate_version": __version__,
        "python_version": platform.python_version(),
        "platform": sys.platform,
    }
