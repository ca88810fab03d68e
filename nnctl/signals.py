"""Stop requests by signal, turned into an exception so that cleanup runs.

SIGTERM (schedulers, `timeout`, `docker stop`) and SIGHUP (a closed terminal or SSH session)
kill a Python process outright: no message, temporary files left, the cursor left hidden.
Under `stop_on_signals()` they raise `Stopped`, a KeyboardInterrupt, exactly where Ctrl-C
would: the same `except KeyboardInterrupt` paths save, clean up and say how to resume, and
the exit code is the shell's 128 + the signal's number. Signals after the first are ignored
until the process ends, so the cleanup is never cut short by a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop request by signal; `exit_code` is what a shell reports for it."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exit_code(stop: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the run (SIGINT for a plain KeyboardInterrupt)."""
    return getattr(stop, "exit_code", 128 + signal.SIGINT)


def describe(stop: KeyboardInterrupt) -> str:
    """'interrupted' for Ctrl-C, 'stopped by SIGTERM' for the others."""
    signum = getattr(stop, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = HANDLED) -> Iterator[None]:
    """Raise Stopped on the first of `signals`, ignore the ones after it. Off the main
    thread (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame) -> None:
        # Ignored at the C level from now on: Python's own handlers are reset to the
        # default when the interpreter shuts down, which a late signal would die of.
        for number in previous:
            signal.signal(number, signal.SIG_IGN)
        received.append(signum)
        raise Stopped(signum)

    # A signal ignored when nnctl started stays ignored: `nohup nnctl train` survives a hangup.
    previous = {number: signal.signal(number, handler) for number in signals
                if signal.getsignal(number) is not signal.SIG_IGN}
    try:
        yield
    finally:
        if not received:  # once stopping, later signals stay ignored until the process ends
            for number, old in previous.items():
                signal.signal(number, old)
