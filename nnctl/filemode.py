"""The permission bits of a file nnctl writes through a temporary file and a rename.

`tempfile.mkstemp` creates files 0600 whatever the umask, and the rename keeps that mode:
weights and the MNIST cache would end up unreadable to the group and others. A new file gets
what the umask gives any new file (0644 under the usual 022); a replaced file keeps its mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it in /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it
    os.umask(mask)
    return mask


def mode_for(path: Path) -> int:
    """The mode of the file at `path` if there is one, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def set_mode_for(fd: int, path: Path) -> None:
    """Give the open temporary file `fd` the mode it should have once renamed to `path`."""
    os.fchmod(fd, mode_for(path))
