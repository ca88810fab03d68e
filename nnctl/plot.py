"""Training curves from the history a weights file carries, drawn with matplotlib (optional)."""

from __future__ import annotations

from pathlib import Path

from nnctl.errors import NnctlError

INSTALL_HINT = "matplotlib is not installed; install it with: pip install 'nnctl[plot]'"


def plot_history(history: list[dict], out: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, for training and every evaluated split, as one PNG."""
    plt = pyplot()
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
        raise NnctlError(f"{out}: cannot write ({error.strerror})") from None
    finally:
        plt.close(figure)
    return out
