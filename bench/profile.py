"""Summarise a py-spy raw (collapsed) profile: where the server spent its CPU.

    python -m bench --only e2e --backends postgres --profile bench/results/profile
    python -m bench.profile bench/results/profile/taskstate-postgres-i0-*.txt

py-spy samples only threads that are running (not idle) unless told otherwise, so the
shares below are shares of the server's busy time. Prints: the share of samples by
library (the innermost frame outside the standard library's asyncio/selectors that
belongs to a known package), the top functions by self time, and the top taskstate
functions by inclusive time (everything they called).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

#: (group, path prefix) — py-spy names files relative to their sys.path entry.
GROUPS = [
    ("taskstate", "taskstate/"),
    ("sqlalchemy", "sqlalchemy/"),
    ("asyncpg", "asyncpg/"),
    ("aiosqlite/sqlite3", "aiosqlite/"),
    ("aiosqlite/sqlite3", "sqlite3/"),
    ("pydantic", "pydantic"),
    ("fastapi/starlette", "fastapi/"),
    ("fastapi/starlette", "starlette/"),
    ("uvicorn/httptools", "uvicorn/"),
    ("websockets", "websockets/"),
    ("greenlet", "greenlet/"),
    ("json", "json/"),
    ("logging", "logging/"),
    ("event loop (uvloop/asyncio, C code included)", "asyncio/"),
    ("event loop (uvloop/asyncio, C code included)", "selectors.py"),
    ("threads", "threading.py"),
    ("threads", "queue.py"),
    ("threads", "concurrent/"),
    ("imports", "<frozen importlib"),
]


def _parse(line: str) -> tuple[list[tuple[str, str]], int] | None:
    line = line.rstrip("\n")
    if not line or " " not in line:
        return None
    stack, _, count = line.rpartition(" ")
    if not count.isdigit():
        return None
    frames = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw)
        if m is None:
            continue  # "process …" / "thread …" headers
        frames.append((m.group("func"), f"{m.group('file')}:{m.group('line') or '?'}"))
    return frames, int(count)


def _group(file: str) -> str | None:
    for name, prefix in GROUPS:
        if file.startswith(prefix) or f"/{prefix}" in file:
            return name
    return None


def summarise(path: Path, top: int = 20) -> str:
    total = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_line: Counter[str] = Counter()
    by_group: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        frames, count = parsed
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        self_time[f"{func} ({_short(file.rsplit(':', 1)[0])})"] += count
        # The innermost frame that belongs to a known library names the group.
        group = "other"
        for _func, f_file in reversed(frames):
            g = _group(f_file)
            if g is not None:
                group = g
                break
        by_group[group] += count
        seen = set()
        innermost = None
        for f_func, f_file in frames:
            if _group(f_file) == "taskstate":
                innermost = f"{f_func} ({f_file})"
                key = f"{f_func} ({f_file.rsplit(':', 1)[0]})"
                if key not in seen:
                    seen.add(key)
                    inclusive[key] += count
        by_line[innermost or "(no taskstate frame)"] += count
    if not total:
        return f"{path}: no samples"
    lines = [f"{path.name}: {total} samples of busy time", "", "by library (innermost known frame):"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in by_group.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_time.most_common(top)]
    lines += ["", f"top {top} taskstate functions by inclusive time:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    lines += ["", f"top {top} innermost taskstate lines (what taskstate code the sample was under):"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in by_line.most_common(top)]
    return "\n".join(lines)


def _short(file: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    for file in args.files:
        print(summarise(file, args.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
