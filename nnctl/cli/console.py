"""The Rich consoles the commands print through.

Nothing a user gives (a path, a file name) may be read as Rich markup or emoji codes, so
markup is off: `w[best].npz` prints as typed. On a pipe or into a file, the spaces Rich pads
table cells with are dropped from the ends of lines.
"""

from __future__ import annotations

import sys
from typing import TextIO


class TrimmedLines:
    """A text stream that writes whole lines without their trailing spaces."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.pending = ""

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.stream.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(self.pending)
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def make_console(quiet: bool = False, stderr: bool = False):
    """A console on stdout (or stderr) with markup and emoji codes off."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", lambda: False)
    file = stream if isatty() else TrimmedLines(stream)
    return Console(file=file, quiet=quiet, highlight=False, markup=False, emoji=False)
