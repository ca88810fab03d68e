"""`nnctl`: the commands. Each parses its options, calls the library, and renders the result.

Heavy imports (NumPy, Rich, the library) happen inside the commands, so that `nnctl --help`
answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from nnctl import __version__
from nnctl.errors import NnctlError, UsageError

app = typer.Typer(
    help="Train, evaluate and use neural networks on MNIST, written from scratch in NumPy.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Download and inspect the MNIST files.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Where MNIST is cached [default: $NNCTL_DATA_DIR, else ./data].")]


def guarded(command: Callable) -> Callable:
    """Turn NnctlError into one line on stderr and its exit code, and Ctrl-C into 130."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NnctlError as error:
            for line in str(error).splitlines():
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return run


def _console(quiet: bool = False):
    from rich.console import Console

    return Console(quiet=quiet, highlight=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nnctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False
         ) -> None:
    """Train, evaluate and use neural networks on MNIST, written from scratch in NumPy."""


@app.command()
@guarded
def train(
    config: Annotated[Path, typer.Argument(help="The YAML config describing the run.")],
    out: Annotated[Optional[Path], typer.Option(help="Weights file to write [default: the config's output].")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override training.epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override training.batch_size.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Override training.learning_rate.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Override training.seed.")] = None,
    data_dir: DataDir = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue a run from its weights file.")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="Append one JSON line per epoch to this file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Train a network on MNIST as CONFIG describes, and save its weights."""
    from nnctl import experiment, weights
    from nnctl.cli import render
    from nnctl.cli.progress import DownloadBars, EpochBar
    from nnctl.config import load_config

    overrides = {"training.epochs": epochs, "training.batch_size": batch_size,
                 "training.learning_rate": learning_rate, "training.seed": seed}
    settings = load_config(config, {k: v for k, v in overrides.items() if v is not None})
    checkpoint = weights.load(resume) if resume else None
    console = _console(quiet)
    rows = render.EpochTable(console)
    with _metrics_log(metrics) as log, EpochBar(console, settings.training.epochs) as bar:
        def on_epoch(report) -> None:
            rows.add(report)
            log(report)

        result = experiment.train(
            settings, out or resume or Path(settings.output), data_dir,
            on_start=lambda network: render.model_summary(console, network, settings),
            on_epoch=on_epoch,
            on_batch=bar.on_batch, observer=DownloadBars(console), resume=checkpoint,
            command=f"nnctl train {config}")
    render.training_summary(console, result)


@contextlib.contextmanager
def _metrics_log(path: Optional[Path]):
    """A function that appends an epoch report as one JSON line (or does nothing)."""
    if path is None:
        yield lambda report: None
        return
    try:
        sink = open(path, "a", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{path}: cannot write the metrics file ({error.strerror})") from None
    with sink:
        def write(report) -> None:
            sink.write(json.dumps(report.as_dict()) + "\n")
            sink.flush()
        yield write


@app.command()
@guarded
def evaluate(
    weights: Annotated[Path, typer.Argument(help="A weights file written by nnctl train.")] = Path("weights.npz"),
    data_dir: DataDir = None,
    split: Annotated[str, typer.Option(help="Which MNIST split: test or train.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Accuracy, loss, per-class figures and the confusion matrix on a MNIST split."""
    if split not in ("test", "train"):
        raise UsageError(f"--split must be test or train, not {split!r}")
    from nnctl import experiment, weights as weights_file
    from nnctl.cli import render
    from nnctl.cli.progress import DownloadBars

    checkpoint = weights_file.load(weights)
    console = _console()
    report = experiment.evaluate_checkpoint(checkpoint, split, data_dir, DownloadBars(console))
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        render.evaluation(console, report)


@app.command()
@guarded
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, ...).")],
    weights: Annotated[Path, typer.Option(help="The weights file.")] = Path("weights.npz"),
    top_k: Annotated[int, typer.Option(min=1, max=10, help="How many digits to list.")] = 3,
    raw: Annotated[bool, typer.Option("--raw", help="Take 28x28 MNIST-like images as they are.")] = False,
    show: Annotated[bool, typer.Option("--show", help="Draw the 28x28 input the network saw.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    number: Annotated[bool, typer.Option("--number", help="Read a row of digits left to right (a whole number).")] = False,
    explain: Annotated[Optional[Path], typer.Option(help="Write a PNG per image showing each preparation stage into this folder.")] = None,
) -> None:
    """Classify your own images of digits, prepared the way MNIST was."""
    from nnctl import weights as weights_file
    from nnctl.cli import render
    from nnctl.predict import predict_files, predict_numbers

    if number and raw:
        raise UsageError("--number and --raw cannot be combined: --raw takes one 28x28 digit")
    checkpoint = weights_file.load(weights)
    if number:
        results = predict_numbers(checkpoint, images, explain)
    else:
        results = predict_files(checkpoint, images, raw, explain)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results]))
    elif number:
        render.numbers(_console(), results, top_k, show)
    else:
        render.predictions(_console(), results, top_k, show)
    failed = [r for r in results if r.error]
    if failed:
        if as_json:
            for r in failed:
                typer.echo(f"error: {r.file}: {r.error}", err=True)
        raise typer.Exit(2)


@app.command()
@guarded
def gradcheck(
    config: Annotated[Path, typer.Argument(help="The YAML config of the network to check.")],
    samples: Annotated[int, typer.Option(min=1, max=1000, help="Batch size of the check.")] = 8,
    entries: Annotated[int, typer.Option(min=1, help="Entries checked per tensor (random sample).")] = 30,
    threshold: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
    data_dir: DataDir = None,
) -> None:
    """Check backprop's gradients against finite differences, tensor by tensor."""
    from nnctl.cli import render
    from nnctl.config import load_config
    from nnctl.gradcheck import check_config

    settings = load_config(config)
    checks, source = check_config(settings, samples, entries, data_dir)
    console = _console()
    console.print(f"{samples} samples from {source}")
    render.gradient_checks(console, checks, threshold)
    worst = max(c.relative_error for c in checks)
    if worst > threshold:
        raise NnctlError(f"backprop disagrees with finite differences: relative error "
                         f"{worst:.2e} > {threshold:g}")


@app.command()
@guarded
def plot(
    weights: Annotated[Path, typer.Argument(help="A weights file written by nnctl train.")] = Path("weights.npz"),
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG to write.")] = Path("curves.png"),
) -> None:
    """Draw the training curves stored in a weights file (needs matplotlib: nnctl[plot])."""
    from nnctl import weights as weights_file
    from nnctl.plot import plot_history

    checkpoint = weights_file.load(weights)
    plot_history(checkpoint.history, out, title=str(weights))
    typer.echo(f"curves written to {out}")


@data_app.command("download")
@guarded
def data_download(data_dir: DataDir = None) -> None:
    """Fetch and verify the four MNIST files ahead of time."""
    from nnctl.cli import render
    from nnctl.cli.progress import DownloadBars
    from nnctl.data.mnist import inspect_cache, load_mnist, resolve_data_dir

    console = _console()
    load_mnist(data_dir, observer=DownloadBars(console))
    render.cache_info(console, inspect_cache(data_dir), resolve_data_dir(data_dir))


@data_app.command("info")
@guarded
def data_info(data_dir: DataDir = None) -> None:
    """Where the MNIST files are, their sizes, whether they verify, and their counts."""
    from nnctl.cli import render
    from nnctl.data.mnist import inspect_cache, resolve_data_dir

    files = inspect_cache(data_dir)
    render.cache_info(_console(), files, resolve_data_dir(data_dir))
    if not all(f.verified for f in files):
        typer.echo("some files are missing or do not verify: run `nnctl data download`", err=True)
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
