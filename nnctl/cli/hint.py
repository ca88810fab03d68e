"""The command that continues an interrupted run, rebuilt from the invocation that started it.

Printed when training stops early (Ctrl-C, a signal): copied and run literally, it must train
the very same run, so it carries every option the run was started with.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any


def resume_command(config: str | Path, weights: str | Path, options: dict[str, Any]) -> str:
    """`nnctl train CONFIG --resume WEIGHTS` and the options (`{"--epochs": 5, ...}`) that
    were given: None and False are left out, True is a bare flag. Quoted for a POSIX shell."""
    words = ["nnctl", "train", str(config), "--resume", str(weights)]
    for name, value in options.items():
        if value is None or value is False:
            continue
        words.append(name)
        if value is not True:
            words.append(str(value))
    return shlex.join(words)
