"""Rich renderings of what the library returns: tables, bars, matrices. No computation."""

from __future__ import annotations

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from nnctl.metrics import averages

# (header, width of its values, shown only where there is room). The widest value is
# "100.00%", "0.000822" (a learning rate), "12345.6s" or an ETA "1:02:03".
EPOCH_COLUMNS = [("epoch", 5, False), ("lr", 8, True), ("train loss", 6, False),
                 ("train acc", 7, False), ("val loss", 6, False), ("val acc", 7, False),
                 ("test loss", 6, False), ("test acc", 7, False), ("seconds", 7, False),
                 ("ETA", 7, True)]


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def count(n: int, word: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def model_summary(console: Console, network, config, threads: str = "") -> None:
    table = Table(title="model", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("layer", "output shape", "details", "parameters"):
        table.add_column(name, justify="right" if name == "parameters" else "left")
    table.add_row("input", _shape(network.input_shape), "", "")
    for name, shape, parameters, details in network.summary():
        table.add_row(name, _shape(shape), details, f"{parameters:,}")
    table.add_section()
    table.add_row("total", "", "", f"{network.parameter_count():,}")
    console.print(table)
    t = config.training
    o = t.optimizer
    extras = (f"momentum {o.momentum:g}{' nesterov' if o.nesterov else ''}" if o.name == "sgd"
              else f"beta1 {o.beta1:g} beta2 {o.beta2:g}")
    console.print(f"loss {config.loss}; optimizer {o.name} (learning rate {t.learning_rate:g}, {extras}, weight "
                  f"decay {o.weight_decay:g}), batch {t.batch_size}, {count(t.epochs, 'epoch')}, seed "
                  f"{t.seed}, {t.dtype}" + (f", {threads}" if threads else ""), highlight=False)


def _shape(shape: tuple) -> str:
    return f"{shape[0]} values" if len(shape) == 1 else " x ".join(map(str, shape))


def _epoch_columns(width: int | None) -> list[tuple[str, str, int]]:
    """(name, header, width) of the columns that fit `width` (the console's): one-line headers
    where there is room, else two-line ones ("train" over "loss"), else without the optional
    columns; never a header cut short."""
    def fits(columns) -> bool:
        return width is None or sum(size for *_, size in columns) + len(columns) - 1 <= width

    one_line = [(name, name, max(size, len(name))) for name, size, _ in EPOCH_COLUMNS]
    two_lines = [(name, name.replace(" ", "\n"), max(size, *map(len, name.split())))
                 for name, size, _ in EPOCH_COLUMNS]
    essential = [column for column, (*_, optional) in zip(two_lines, EPOCH_COLUMNS)
                 if not optional]
    return next((c for c in (one_line, two_lines) if fits(c)), essential)


def _epoch_table(header: bool, columns: list[tuple[str, str, int]]) -> Table:
    table = Table(box=None, show_header=header, header_style="bold", pad_edge=False,
                  padding=(0, 0, 0, 1))
    for _, heading, size in columns:
        table.add_column(heading, justify="right", width=size, no_wrap=True)
    return table


class EpochTable:
    """A table printed a row at a time, as epochs finish; the header comes with the first.
    The ETA is the mean time of this run's epochs so far times the epochs left."""

    def __init__(self, console: Console, epochs: int = 0):
        self.console = console
        self.epochs = epochs
        self.rows = 0
        self.seconds = 0.0

    def add(self, report) -> None:
        self.rows += 1
        self.seconds += report.seconds
        left = max(0, self.epochs - report.epoch) * self.seconds / self.rows
        self.console.print(epoch_row(report, header=self.rows == 1, eta=left,
                                     width=self.console.width))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def epoch_row(report, header: bool = False, eta: float | None = None,
              width: int | None = None) -> Table:
    evaluations = report.evaluations
    val = evaluations.get("validation")
    test = evaluations.get("test")
    cells = {
        "epoch": str(report.epoch), "lr": f"{report.learning_rate:.3g}",
        "train loss": f"{report.train_loss:.4f}", "train acc": _percent(report.train_accuracy),
        "val loss": f"{val.loss:.4f}" if val else "-",
        "val acc": _percent(val.accuracy) if val else "-",
        "test loss": f"{test.loss:.4f}" if test else "-",
        "test acc": _percent(test.accuracy) if test else "-",
        "seconds": f"{report.seconds:.1f}", "ETA": _duration(eta) if eta else "-",
    }
    columns = _epoch_columns(width)
    table = _epoch_table(header, columns)
    table.add_row(*(cells[name] for name, *_ in columns))
    return table


def batch_log(console: Console, log) -> None:
    """One line of running figures, every --log-every batches."""
    console.print(f"epoch {log.epoch} batch {log.batch}/{log.batches}: loss "
                  f"{log.train_loss:.4f}, accuracy {_percent(log.train_accuracy)}")


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
    console.print(Text.assemble(f"{report.split} set: {count(report.samples, 'sample')}, "
                                "accuracy ", (_percent(report.accuracy), "bold"),
                                f", mean loss {report.loss:.4f}"))
    figures = Table(title="per class", box=box.SIMPLE_HEAD, title_justify="left")
    digits = report.names == tuple(str(label) for label in range(len(report.names)))
    for name in ("digit" if digits else "class", "precision", "recall", "F1", "support"):
        figures.add_column(name, justify="left" if name == "class" else "right")
    for c in report.classes:
        figures.add_row(_class_label(report.names, c.label), _percent(c.precision),
                        _percent(c.recall), _percent(c.f1), str(c.support))
    figures.add_section()
    for name, mean in averages(report.classes).items():
        figures.add_row(f"{name} avg", _percent(mean["precision"]), _percent(mean["recall"]),
                        _percent(mean["f1"]), str(mean["support"]))
    console.print(figures)
    console.print(confusion_table(report.confusion, None if digits else report.names))


def _class_label(names, label: int) -> str:
    """'7' for a digit, '9 Ankle boot' for a named class."""
    name = names[label]
    return name if name == str(label) else f"{label} {name}"


def confusion_table(confusion: np.ndarray, names=None) -> Table:
    """Rows are true classes, columns predictions; the diagonal green, errors red by count.
    With names, rows carry 'index name' and columns the index only, to stay narrow."""
    what = "digit" if names is None else "class"
    table = Table(title=f"confusion matrix (rows: true {what}, columns: predicted)",
                  box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("", style="bold", justify="left" if names else "right")
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
        table.add_row(str(true) if names is None else _class_label(names, true), *cells)
    return table


def predictions(console: Console, results, top_k: int, show: bool) -> None:
    """Each image's digit and its top-k outputs: probabilities as percentages with a bar for a
    softmax output, plain scores (which need not sum to 1) for any other output."""
    for item in results:
        if item.error:
            continue  # errors go to stderr, from the command
        names = item.classes or tuple(str(label) for label in range(len(item.probabilities)))
        top = float(item.probabilities[item.label])
        figure = f" {100 * top:.1f}%" if item.normalised else " (scores)"
        console.print(Text.assemble((str(item.file), "bold"), ": ",
                                    (names[item.label], "bold green"), figure),
                      soft_wrap=True)
        order = np.argsort(item.probabilities)[::-1][:top_k]
        width = max(len(names[label]) for label in order)
        for label in order:
            p = float(item.probabilities[label])
            if not item.normalised:
                console.print(Text(f"  {names[label]:<{width}}  {p:8.4f}"))
                continue
            bar = "█" * round(30 * p)
            console.print(Text(f"  {names[label]:<{width}}  {bar:<30} {100 * p:6.2f}%".rstrip()))
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
    grid = np.clip(pixels if pixels.ndim == 2 else pixels.reshape(28, 28), 0.0, 1.0)
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


def cache_info(console: Console, files, data_dir, title: str = "MNIST") -> None:
    console.print(f"{title} cache in {data_dir}", soft_wrap=True)  # a long path, unbroken
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("file", "size", "verified", "samples", "count per class 0-9"):
        table.add_column(name, no_wrap=name == "file")
    for entry in files:
        size = f"{entry.size:,} B" if entry.size is not None else "missing"
        verified = Text("yes", style="green") if entry.verified else Text(
            "no" if entry.size is not None else "-", style="red")
        samples = f"{entry.samples:,}" if entry.samples is not None else ""
        classes = " ".join(map(str, entry.class_counts)) if entry.class_counts else ""
        table.add_row(entry.path.name, size, verified, samples, classes)
    console.print(table)
