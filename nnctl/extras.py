"""The command that installs an optional dependency into the Python nnctl runs in.

`pip install 'nnctl[plot]'` would fetch nnctl itself from the index, and a bare `pip` may
belong to another environment; `sys.executable -m pip` installs exactly where nnctl runs,
inside a virtual environment or not.
"""

from __future__ import annotations

import shlex
import sys


def install_command(*requirements: str) -> str:
    """`/path/to/python -m pip install 'matplotlib>=3.6'`, quoted for a POSIX shell."""
    return shlex.join([sys.executable, "-m", "pip", "install", *requirements])
