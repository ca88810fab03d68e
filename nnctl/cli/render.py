"""Rich renderings of what the library returns: tables, bars, matrices. No computation."""

from __future__ import annotations

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

EPOCH_COLUMNS = [("epoch", 5), ("train loss", 10), ("train acc", 9), ("val acc", 8),
                 ("test loss", 9), ("test acc", 8), ("seconds", 7)]


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def model_summary(console: Console, network, config) -> None:
    table = Table(title="model", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("layer", "weights W", "bias b", "activation", "parameters"):
        table.add_column(name, justify="right" if name == "parameters" else "left")
    table.add_row("input", f"{network.sizes[0]} values", "", "", "")
    for index, (w, b, f) in enumerate(zip(network.weights, network.biases, network.activations)):
        table.add_row(f"dense {index}", f"{w.shape[0]} x {w.shape[1]}", f"{b.shape[0]}",
                      f.name + "".join(f" {k}={v:g}" for k, v in f.params.items()),
                      f"{w.size + b.size:,}")
    table.add_section()
    table.add_row("total", "", "", "", f"{network.parameter_count():,}")
    console.print(table)
    t = config.training
    o = t.optimizer
    extras = (f"momentum {o.momentum:g}{' nesterov' if o.nesterov else ''}" if o.name == "sgd"
              else f"beta1 {o.beta1:g} beta2 {o.beta2:g}")
    console.print(f"loss {config.loss}; optimizer {o.name} (learning rate {t.learning_rate:g}, {extras}, weight "
                  f"decay {o.weight_decay:g}), batch {t.batch_size}, {t.epochs} epochs, seed "
                  f"{t.seed}, {t.dtype}", highlight=False)


def _epoch_table(header: bool) -> Table:
    table = Table(box=None, show_header=header, header_style="bold", pad_edge=False)
    for name, width in EPOCH_COLUMNS:
        table.add_column(name, justify="right", width=width, no_wrap=True)
    return table


class EpochTable:
    """A table printed a row at a time, as epochs finish; the header comes with the first."""

    def __init__(self, console: Console):
        self.console = console
        self.rows = 0

    def add(self, report) -> None:
        self.console.print(epoch_row(report, header=self.rows == 0))
        self.rows += 1


def epoch_row(report, header: bool = False) -> Table:
    evaluations = report.evaluations
    val = evaluations.get("validation")
    test = evaluations.get("test")
    table = _epoch_table(header)
    table.add_row(str(report.epoch), f"{report.train_loss:.4f}", _percent(report.train_accuracy),
                  _percent(val.accuracy) if val else "-", f"{test.loss:.4f}" if test else "-",
                  _percent(test.accuracy) if test else "-", f"{report.seconds:.1f}")
    return table


def training_summary(console: Console, result) -> None:
    last = result.history[-1] if result.history else None
    if last is None:
        console.print("nothing to train: every epoch is already done")
        return
    best = next(r for r in result.history if r["epoch"] == result.best_epoch)
    if result.best_metric:
        accuracy = best["evaluations"][result.best_metric]["accuracy"]
        console.print(f"best epoch {result.best_epoch} ({result.best_metric} accuracy "
                      f"{_percent(accuracy)})", highlight=False)
    if result.restored_epoch:
        test = best["evaluations"].get("test")
        console.print(f"early stopping: the weights of epoch {result.restored_epoch} were "
                      f"restored", highlight=False)
    else:
        test = last["evaluations"].get("test")
    if test:
        console.print(f"test accuracy of the saved weights {_percent(test['accuracy'])}, loss "
                      f"{test['loss']:.4f}", highlight=False)
    console.print(f"total time {result.seconds:.1f} s; weights saved to {result.path}",
                  highlight=False)


def evaluation(console: Console, report) -> None:
    console.print(f"{report.split} set: {report.samples} samples, accuracy "
                  f"[bold]{_percent(report.accuracy)}[/], mean loss {report.loss:.4f}")
    figures = Table(title="per class", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("digit", "precision", "recall", "F1", "support"):
        figures.add_column(name, justify="right")
    for c in report.classes:
        figures.add_row(str(c.label), _percent(c.precision), _percent(c.recall),
                        f"{c.f1:.4f}", str(c.support))
    console.print(figures)
    console.print(confusion_table(report.confusion))


def confusion_table(confusion: np.ndarray) -> Table:
    """Rows are true digits, columns predictions; the diagonal green, errors red by count."""
    table = Table(title="confusion matrix (rows: true digit, columns: predicted)",
                  box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("", style="bold", justify="right")
    for label in range(len(confusion)):
        table.add_column(str(label), justify="right")
    worst = max(1, int((confusion - np.diag(np.diag(confusion))).max()))
    for true, row in enumerate(confusion):
        cells = []
        for predicted, count in enumerate(row):
            if true == predicted:
                style = "bold green"
            elif count == 0:
                style = "dim"
            else:
                style = "red" if count / worst > 0.5 else "yellow"
            cells.append(Text(str(count), style=style))
        table.add_row(str(true), *cells)
    return table


def predictions(console: Console, results, top_k: int, show: bool) -> None:
    for item in results:
        if item.error:
            console.print(Text(f"{item.file}: error: {item.error}", style="red"), soft_wrap=True)
            continue
        console.print(Text.assemble((str(item.file), "bold"), ": ", (str(item.label), "bold green")))
        order = np.argsort(item.probabilities)[::-1][:top_k]
        for digit in order:
            p = float(item.probabilities[digit])
            bar = "█" * round(30 * p)
            console.print(f"  {digit}  {bar:<30} {100 * p:6.2f}%", highlight=False)
        if show:
            console.print(ascii_digit(item.pixels))


def numbers(console: Console, results, top_k: int, show: bool) -> None:
    """Each image's number, then each digit's box, top-k and confidence."""
    for item in results:
        if item.error:
            console.print(Text(f"{item.file}: error: {item.error}", style="red"), soft_wrap=True)
            continue
        console.print(Text.assemble((str(item.file), "bold"), ": ", (item.number, "bold green")))
        for index, digit in enumerate(item.digits, 1):
            order = np.argsort(digit.probabilities)[::-1][:top_k]
            ranked = "  ".join(f"{d} {100 * float(digit.probabilities[d]):5.1f}%" for d in order)
            console.print(f"  digit {index} at {tuple(digit.box)}: {ranked}", highlight=False)
            if show:
                console.print(ascii_digit(digit.pixels))


def ascii_digit(pixels: np.ndarray) -> Text:
    """The 28x28 input as the network saw it, two characters per pixel."""
    shades = " .:-=+*#%@"
    grid = np.clip(pixels.reshape(28, 28), 0.0, 1.0)
    lines = ["".join(shades[min(9, int(v * 10))] * 2 for v in row) for row in grid]
    return Text("\n".join(lines))


def gradient_checks(console: Console, checks, threshold: float) -> None:
    table = Table(title="backprop vs fourth-order central differences (float64)",
                  box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("tensor", "shape", "entries checked", "relative error", ""):
        table.add_column(name, justify="right" if name != "tensor" else "left")
    for check in checks:
        ok = check.relative_error <= threshold
        table.add_row(check.name, " x ".join(map(str, check.shape)), str(check.checked),
                      f"{check.relative_error:.2e}",
                      Text("ok" if ok else "FAIL", style="green" if ok else "bold red"))
    console.print(table)


def cache_info(console: Console, files, data_dir) -> None:
    table = Table(title=f"MNIST cache in {data_dir}", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("file", "size", "verified", "samples", "count per class 0-9"):
        table.add_column(name)
    for entry in files:
        size = f"{entry.size:,} B" if entry.size is not None else "missing"
        verified = Text("yes", style="green") if entry.verified else Text(
            "no" if entry.size is not None else "-", style="red")
        samples = f"{entry.samples:,}" if entry.samples is not None else ""
        classes = " ".join(map(str, entry.class_counts)) if entry.class_counts else ""
        table.add_row(str(entry.path), size, verified, samples, classes)
    console.print(table)
