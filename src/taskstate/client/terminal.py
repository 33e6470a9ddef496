"""Where the live commands (`watch`, `submit --wait`, `tree --watch`, `logs --follow`) write.

Lines for people go to stdout and notes about the connection to stderr. On a terminal, the
progress bars (one per active task) stay at the bottom, redrawn in place, with the lines
scrolling above them; a block (a tree of tasks) is redrawn in place as a whole. Elsewhere (a
pipe, a file) every progress report is a line of its own and a block is printed once more
each time it is drawn.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

#: Lines of the terminal left free above the bars when there are more bars than fit.
_SPARE_ROWS = 2


class Terminal:
    """stdout for people, with the bars of the active tasks (or one block) redrawn in place."""

    def __init__(self, *, quiet: bool = False, json_lines: bool = False, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        #: Nothing for people at all (`submit --wait --json`).
        self.quiet = quiet
        #: stdout carries JSON lines: notes stay off it, and nothing is redrawn.
        self.json_lines = json_lines
        self.tty = self.out.isatty() and not json_lines
        #: The bar of each active task, in the order the tasks were first seen.
        self._bars: dict[str, str] = {}
        #: How many lines of bars are on the screen under the cursor's line.
        self._bars_height = 0
        self._block_height = 0
        self._deferred = False

    def line(self, text: str) -> None:
        """A line that stays: printed above the bars."""
        if self.quiet:
            return
        self._erase_bars()
        self._block_height = 0  # the block is above this line now: it stays as it was
        print(text, file=self.out, flush=True)
        self._draw_bars()

    def progress(self, key: str, text: str) -> None:
        """A progress report of task `key`: its bar, redrawn, on a terminal; a line elsewhere."""
        if self.quiet:
            return
        if self.tty:
            self.bar(key, text)
        else:
            print(text, file=self.out, flush=True)

    def bar(self, key: str, text: str) -> None:
        """Sets task `key`'s bar (shown on a terminal only: elsewhere the lines say it all)."""
        if self.quiet or not self.tty or self._bars.get(key) == text:
            return
        self._erase_bars()
        self._bars[key] = text
        self._draw_bars()

    def drop_bar(self, key: str) -> None:
        """Task `key` has ended: its bar goes."""
        if key in self._bars:
            self._erase_bars()
            del self._bars[key]
            self._draw_bars()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The bars set inside are drawn once, at the end (a snapshot of 800 tasks is one
        redraw, not 800)."""
        self._erase_bars()
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False
            self._draw_bars()

    def block(self, lines: list[str]) -> None:
        """Draws `lines`, in the place of the block drawn last when on a terminal."""
        if self.quiet:
            return
        self.end_bars()
        if self.tty:
            width = self._width()
            lines = [_fit(line, width) for line in lines]
            if self._block_height:
                self.out.write(f"\x1b[{self._block_height}F\x1b[J")  # back to its first line, clear below
        self.out.write("".join(f"{line}\n" for line in lines))
        self.out.flush()
        self._block_height = len(lines) if self.tty else 0

    def note(self, text: str) -> None:
        if not self.quiet and not self.json_lines:
            self._erase_bars()  # stderr is most often the same terminal
            print(f"taskstate: {text}", file=sys.stderr, flush=True)
            self._draw_bars()

    def end_bars(self) -> None:
        """Takes every bar off the screen, for good (the command is ending)."""
        self._erase_bars()
        self._bars.clear()

    def _erase_bars(self) -> None:
        if self._bars_height:
            # The cursor is on the line under the bars: up to the first, and clear to the end.
            self.out.write(f"\r\x1b[{self._bars_height}A\x1b[J")
            self.out.flush()
            self._bars_height = 0

    def _draw_bars(self) -> None:
        if not self._bars or not self.tty or self._deferred:
            return
        width = self._width()
        room = max(1, shutil.get_terminal_size().lines - _SPARE_ROWS)
        bars = list(self._bars.values())
        if len(bars) > room:
            hidden = len(bars) - room + 1
            bars = [*bars[: room - 1], f"… and {hidden} more active task{'s' if hidden != 1 else ''}"]
        self.out.write("".join(f"{_fit(bar, width)}\n" for bar in bars))
        self.out.flush()
        self._bars_height = len(bars)

    def _width(self) -> int:
        # One column less than the terminal's: a line that fills it would wrap on some.
        return max(20, shutil.get_terminal_size().columns - 1)


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"
