"""Training curves from the history a weights file carries, drawn with matplotlib (optional)."""

from __future__ import annotations

from pathlib import Path

from nnctl.errors import NnctlError, UsageError
from nnctl.extras import install_command

INSTALL_HINT = f"matplotlib is not installed; install it with: {install_command('matplotlib>=3.6')}"


def check_format(out: Path, supported: dict[str, str]) -> None:
    """A one-line UsageError unless the file name ends in a format matplotlib writes."""
    suffix = out.suffix.lstrip(".").lower()
    if suffix not in supported:
        known = ", ".join(f".{name}" for name in sorted(supported))
        what = f"the format .{suffix}" if suffix else "a name without an extension"
        raise UsageError(f"{out}: cannot draw to {what}; use one of {known}")


def plot_history(history: list[dict], out: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, for training and every evaluated split, as one PNG."""
    plt = pyplot()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    check_format(Path(out), FigureCanvasAgg.get_supported_filetypes())
    if not history:
        raise NnctlError("the weights file has no training history to plot")
    epochs = [row["epoch"] for row in history]
    splits = sorted({name for row in history for name in row.get("evaluations", {})})
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    loss_axis.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    accuracy_axis.plot(epochs, [100 * r["train_accuracy"] for r in history], "o-", label="train")
    for split in splits:
        rows = [r for r in history if split in r["evaluations"]]
        x = [r["epoch"] for r in rows]
        loss_axis.plot(x, [r["evaluations"][split]["loss"] for r in rows], "o-", label=split)
        accuracy_axis.plot(x, [100 * r["evaluations"][split]["accuracy"] for r in rows], "o-",
                           label=split)
    loss_axis.set(xlabel="epoch", ylabel="mean loss", yscale="log", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    return save_figure(figure, out, title)


def pyplot():
    """matplotlib's pyplot drawing to files, or the one-line hint to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnctlError(INSTALL_HINT) from None
    return plt


def save_figure(figure, out: Path, title: str = "") -> Path:
    """Write the figure as a PNG and close it; a one-line error when it cannot be written."""
    import matplotlib.pyplot as plt

    if title:
        figure.suptitle(title)
    figure.tight_layout()
    try:
        figure.savefig(out, dpi=110)
    except OSError as error:
        raise NnctlError(f"{out}: cannot write ({error.strerror or error})") from None
    finally:
        plt.close(figure)
    return out
