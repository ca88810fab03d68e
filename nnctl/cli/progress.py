"""Rich progress bars for downloads and training epochs, drawn only on a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress,
                           ProgressColumn, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Batches per second."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f} batch/s" if task.speed else "", style="progress.data.speed")


class DownloadBars:
    """A DownloadObserver that shows bytes, speed and ETA per file."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=console,
            disable=not console.is_terminal, transient=True)
        self.task = None
        self.console = console

    def note(self, message: str, retry: bool) -> None:
        """Which mirror is tried, on a terminal; each retry and failover, on stderr always,
        so that logs have them too."""
        if self.console.quiet or not (retry or self.console.is_terminal):
            return
        Console(stderr=True, highlight=False).print(
            Text(message, style="yellow" if retry else "dim"), soft_wrap=True)

    def start(self, label: str, total: int | None) -> None:
        self.progress.start()
        self.task = self.progress.add_task(f"download {label}", total=total)

    def advance(self, nbytes: int) -> None:
        self.progress.advance(self.task, nbytes)

    def finish(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.progress.stop()


class EpochBar:
    """One bar per epoch: batches done, rate and ETA; updated about 50 times an epoch."""

    def __init__(self, console: Console, epochs: int):
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(),
            MofNCompleteColumn(), RateColumn(), TimeRemainingColumn(), console=console,
            disable=not console.is_terminal, transient=True)
        self.task = None

    def __enter__(self) -> "EpochBar":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def on_batch(self, epoch: int, done: int, total: int) -> None:
        if self.task is None or done == 1:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task("", total=total, epoch=epoch)
        if done % max(1, total // 50) == 0 or done == total:
            self.progress.update(self.task, completed=done)
