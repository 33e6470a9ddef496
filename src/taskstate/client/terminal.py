"""Where the live commands (`watch`, `submit --wait`, `tree --watch`) write.

Lines for people go to stdout and notes about the connection to stderr. On a terminal,
a progress bar is one line redrawn in place, and a block (a tree of tasks) is redrawn in
place as a whole; elsewhere (a pipe, a file) every progress report is a line of its own
and a block is printed once more each time it is drawn.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO


class Terminal:
    """stdout for people, with at most one bar or one block being redrawn at a time."""

    def __init__(self, *, quiet: bool = False, json_lines: bool = False, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        #: Nothing for people at all (`submit --wait --json`).
        self.quiet = quiet
        #: stdout carries JSON lines: notes stay off it, and nothing is redrawn.
        self.json_lines = json_lines
        self.tty = self.out.isatty() and not json_lines
        self._bar_shown = False
        self._block_height = 0

    def line(self, text: str) -> None:
        if self.quiet:
            return
        self.end_bar()
        self._block_height = 0  # the block is above this line now: it stays as it was
        print(text, file=self.out, flush=True)

    def progress(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.out.write("\r\x1b[2K" + text)
            self.out.flush()
            self._bar_shown = True
        else:
            print(text, file=self.out, flush=True)

    def block(self, lines: list[str]) -> None:
        """Draws `lines`, in the place of the block drawn last when on a terminal."""
        if self.quiet:
            return
        self.end_bar()
        if self.tty:
            width = max(20, shutil.get_terminal_size().columns - 1)
            lines = [line if len(line) <= width else line[: width - 1] + "…" for line in lines]
            if self._block_height:
                self.out.write(f"\x1b[{self._block_height}F\x1b[J")  # back to its first line, clear below
        self.out.write("".join(f"{line}\n" for line in lines))
        self.out.flush()
        self._block_height = len(lines) if self.tty else 0

    def note(self, text: str) -> None:
        if not self.quiet and not self.json_lines:
            self.end_bar()
            print(f"taskstate: {text}", file=sys.stderr, flush=True)

    def end_bar(self) -> None:
        if self._bar_shown:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self._bar_shown = False
