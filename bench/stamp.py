"""When a benchmark job's code started: `<key> <time.time()>` appended to the file named by
`BENCH_PICKUP_FILE`, one small `O_APPEND` write (lines of concurrent jobs never interleave).
Shared by taskstate's and the peers' jobs, so that each is timed by the same code."""

from __future__ import annotations

import os
import time


def stamp(key: str) -> None:
    fd = os.open(os.environ["BENCH_PICKUP_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)
