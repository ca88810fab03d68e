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
data_app = typer.Typer(help="Download and inspect the files of MNIST and Fashion-MNIST.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DatasetName = Annotated[str, typer.Option(
    "--dataset", help="Which dataset: mnist or fashion-mnist.")]
DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Where datasets are cached; a relative path is relative to the "
                       "current directory \\[default: the config's data.dir, else "
                       "$NNCTL_DATA_DIR, else ./data].")]


def guarded(command: Callable) -> Callable:
    """Turn NnctlError into one line on stderr and its exit code, Ctrl-C, SIGTERM and SIGHUP
    into a message and 128 + the signal, and running out of memory into one line."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        from nnctl import signals

        try:
            with signals.stop_on_signals():
                return command(*args, **kwargs)
        except NnctlError as error:
            for line in str(error).splitlines():
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt as stop:
            typer.echo(signals.describe(stop), err=True)
            raise typer.Exit(signals.exit_code(stop)) from None
        except MemoryError as error:
            typer.echo(f"error: out of memory{f' ({error})' if str(error) else ''}; try a "
                       "smaller network or batch size, or free some memory", err=True)
            raise typer.Exit(1) from None

    return run


def _console(quiet: bool = False, stderr: bool = False):
    from nnctl.cli.console import make_console

    return make_console(quiet, stderr)


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
    out: Annotated[Optional[Path], typer.Option(help="Weights file to write \\[default: the config's output].")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override training.epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override training.batch_size.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Override training.learning_rate.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Override training.seed.")] = None,
    data_dir: DataDir = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue a run from its weights file.")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="Append one JSON line per epoch to this file.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N images of each file: a quick smoke run (overrides data.limit).")] = None,
    log_every: Annotated[int, typer.Option(help="Print the running loss and accuracy every N batches.", min=0)] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    threads: Annotated[Optional[str], typer.Option(help="Override training.threads: a number or auto \\[default: $NNCTL_THREADS, else auto].")] = None,
) -> None:
    """Train a network on the dataset CONFIG names (MNIST by default), and save its weights."""
    from nnctl import experiment, weights
    from nnctl.cli import render
    from nnctl.cli.hint import resume_command
    from nnctl.cli.progress import DownloadBars, EpochBar
    from nnctl.cli.swapped import refuse_as_weights, refuse_weights_as_config
    from nnctl.config import load_config
    from nnctl.threads import describe as describe_threads

    refuse_weights_as_config(config, "train")
    if resume is not None:
        refuse_as_weights(resume, "train")
    overrides = {"training.epochs": epochs, "training.batch_size": batch_size,
                 "training.learning_rate": learning_rate, "training.seed": seed,
                 "data.limit": limit,
                 "training.threads": threads}
    given = {key: value for key, value in overrides.items() if value is not None}
    settings = load_config(config, given, OVERRIDE_OPTIONS)
    checkpoint = weights.load(resume, optimizer=True) if resume else None
    first = 1
    if checkpoint is not None:
        first = experiment.check_resumable(checkpoint, settings, str(resume),
                                           {k: OVERRIDE_OPTIONS[k] for k in given})
    target = out or resume or Path(settings.output)
    again = resume_command(config, target, {
        "--epochs": epochs, "--batch-size": batch_size, "--learning-rate": learning_rate,
        "--seed": seed, "--data-dir": data_dir, "--metrics": metrics, "--limit": limit,
        "--log-every": log_every or None, "--quiet": quiet, "--threads": threads})
    console = _console(quiet)
    observer = DownloadBars(console)
    if not quiet:
        from nnctl.data.source import resolve_config

        observer = _Announcing(observer, data_dir or settings.data.dir,
                               resolve_config(settings.data))
    rows = render.EpochTable(console, settings.training.epochs)
    with _metrics_log(metrics) as log, EpochBar(console, settings.training.epochs) as bar:
        def on_start(network) -> None:
            render.model_summary(console, network, settings,
                                 describe_threads(settings.training.threads))
            if checkpoint is not None:
                console.print(f"resuming at epoch {first} of {settings.training.epochs}")

        def on_epoch(report) -> None:
            rows.add(report)
            log(report)

        result = experiment.train(
            settings, target, data_dir, on_start=on_start, on_epoch=on_epoch,
            on_batch=bar.on_batch, observer=observer, resume=checkpoint,
            command=again, log_every=log_every,
            on_log=lambda log: render.batch_log(console, log))
    render.training_summary(console, result)


# The config key each option of `nnctl train` overrides, named in errors about its value.
OVERRIDE_OPTIONS = {"training.epochs": "--epochs", "training.batch_size": "--batch-size",
                    "training.learning_rate": "--learning-rate", "training.seed": "--seed",
                    "data.limit": "--limit", "training.threads": "--threads"}


class _Announcing:
    """A download observer that first says where a dataset is being downloaded and why: a
    relative data directory is relative to the current directory, and a run from another
    directory would otherwise start a second download without a word."""

    SIZES = {"mnist": " (11 MB, 55 MB on disk)", "fashion-mnist": " (30 MB, 55 MB on disk)"}

    def __init__(self, inner: Any, data_dir: Any, dataset: Any):
        self.inner, self.data_dir, self.dataset, self.said = inner, data_dir, dataset, False

    def start(self, label: str, total: Optional[int]) -> None:
        if not self.said:
            from nnctl.data.mnist import DATA_DIR_ENV, cache_dir, resolve_data_dir

            folder = cache_dir(resolve_data_dir(self.data_dir), self.dataset).resolve()
            size = self.SIZES.get(self.dataset.name, "")
            typer.echo(f"{self.dataset.title} is not cached in {folder}: downloading it{size}. "
                       "Data directories are relative to the current directory; set "
                       f"{DATA_DIR_ENV} to one absolute path to share a single cache.", err=True)
            self.said = True
        self.inner.start(label, total)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def _metrics_log(path: Optional[Path]):
    """A function that appends an epoch report as one JSON line (or does nothing). Every line
    carries `run`, the UTC time the command started, so runs appended to one file separate."""
    if path is None:
        yield lambda report: None
        return
    from datetime import datetime, timezone

    run = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    try:
        sink = open(path, "a", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{path}: cannot write the metrics file ({error.strerror})") from None
    def write(report) -> None:
        try:
            sink.write(json.dumps({"run": run, **report.as_dict()}) + "\n")
            sink.flush()
        except OSError as error:
            raise NnctlError(f"{path}: cannot write the metrics file ({error.strerror}); the "
                             f"weights of epoch {report.epoch} were saved") from None
    try:
        yield write
    finally:
        with contextlib.suppress(OSError):
            sink.close()


@app.command()
@guarded
def evaluate(
    weights: Annotated[Path, typer.Argument(help="A weights file written by nnctl train.")] = Path("weights.npz"),
    data_dir: DataDir = None,
    split: Annotated[str, typer.Option(
        help="Which split: test, train, or validation (the training images the run held "
             "out).")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Accuracy, loss, per-class figures and the confusion matrix on a split of its dataset."""
    if split not in ("test", "train", "validation"):
        raise UsageError(f"--split must be test, train or validation, not {split!r}")
    from nnctl import experiment, weights as weights_file
    from nnctl.cli import render
    from nnctl.cli.progress import DownloadBars
    from nnctl.cli.swapped import refuse_as_weights

    refuse_as_weights(weights, "evaluate")
    checkpoint = weights_file.load(weights)
    console = _console()
    observer = DownloadBars(console)
    if not as_json:
        observer = _Announcing(observer, data_dir or checkpoint.config.data.dir,
                               checkpoint.dataset)
    report = experiment.evaluate_checkpoint(checkpoint, split, data_dir, observer)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        render.evaluation(console, report)


@app.command()
@guarded
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, ...).")],
    weights: Annotated[Path, typer.Option(help="The weights file.")] = Path("weights.npz"),
    top_k: Annotated[int, typer.Option(min=1, max=10, help="How many classes to list.")] = 3,
    raw: Annotated[bool, typer.Option("--raw", help="Take 28x28 images as they are (as the dataset's).")] = False,
    show: Annotated[bool, typer.Option("--show", help="Draw the 28x28 input the network saw.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    number: Annotated[bool, typer.Option("--number", help="Read a row of digits left to right (a whole number).")] = False,
    explain: Annotated[Optional[Path], typer.Option(help="Write a PNG per image showing each preparation stage into this folder.")] = None,
) -> None:
    """Classify your own images, prepared the way the model's dataset was made."""
    from nnctl import weights as weights_file
    from nnctl.cli import render
    from nnctl.cli.swapped import refuse_as_weights, refuse_weights_as_images
    from nnctl.predict import predict_files, predict_numbers

    if number and raw:
        raise UsageError("--number and --raw cannot be combined: --raw takes one 28x28 digit")
    refuse_weights_as_images(images, weights)
    refuse_as_weights(weights, "predict")
    checkpoint = weights_file.load(weights)
    if number:
        results = predict_numbers(checkpoint, images, explain)
    else:
        results = predict_files(checkpoint, images, raw, explain)
    for r in results:
        if getattr(r, "warning", None):
            typer.echo(f"warning: {r.file}: {r.warning}", err=True)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results]))
    elif number:
        render.numbers(_console(), [r for r in results if not r.error], top_k, show)
    else:
        render.predictions(_console(), [r for r in results if not r.error], top_k, show)
    failed = [r for r in results if r.error]
    for r in failed:
        typer.echo(f"error: {r.file}: {r.error}", err=True)
    if failed:
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
    from nnctl.cli.swapped import refuse_weights_as_config
    from nnctl.config import load_config
    from nnctl.gradcheck import check_config

    if not 0 < threshold < float("inf"):
        raise UsageError(f"--threshold: must be a finite number > 0, got {threshold:g}")
    refuse_weights_as_config(config, "gradcheck")
    settings = load_config(config)
    checks, source = check_config(settings, samples, entries, data_dir)
    console = _console()
    console.print(f"{render.count(samples, 'sample')} from {source}")
    render.gradient_checks(console, checks, threshold)
    worst = max(c.relative_error for c in checks)
    if worst > threshold:
        raise NnctlError(f"backprop disagrees with finite differences: relative error "
                         f"{worst:.2e} > {threshold:g}")


@app.command()
@guarded
def tune(
    config: Annotated[Path, typer.Argument(help="A config with a search: section.")],
    trials: Annotated[int, typer.Option(help="The study's budget: trials it holds when done.")] = 20,
    timeout: Annotated[Optional[float], typer.Option(help="Start no trial after this many seconds.")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (default: SQLite tune.db beside --out).")] = None,
    study: Annotated[Optional[str], typer.Option(help="Study name (default: the config's file name).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the best trial's config here.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override training.epochs of every trial.")] = None,
    pruner: Annotated[str, typer.Option(help="median, halving, hyperband or none.")] = "median",
    heartbeat: Annotated[int, typer.Option(min=1, help="Seconds between a trial's heartbeats; 3 missed: failed.")] = 10,
    report: Annotated[bool, typer.Option("--report", help="Show the study; run nothing.")] = False,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Search the config's search: space with Optuna, on one machine or many."""
    from nnctl.cli.tune import tune as run_tune

    run_tune(config, trials, timeout, jobs, storage, study, out, epochs, pruner, heartbeat,
             report, data_dir, as_json)


@app.command()
@guarded
def plot(
    weights: Annotated[Path, typer.Argument(help="A weights file written by nnctl train.")] = Path("weights.npz"),
    out: Annotated[Path, typer.Option("--out", "-o", help="The image to write: .png, .svg, .pdf, ...")] = Path("curves.png"),
    study: Annotated[Optional[str], typer.Option(help="Draw this nnctl tune study instead.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="The study's storage URL (default: SQLite tune.db here).")] = None,
) -> None:
    """Draw the training curves stored in a weights file (needs matplotlib), or a study's
    history and parameter importances."""
    from nnctl import weights as weights_file
    from nnctl.cli.swapped import refuse_as_weights
    from nnctl.plot import plot_history

    if study is not None:
        from nnctl.search.figure import plot_study

        plot_study(storage or "sqlite:///tune.db", study, out)
        typer.echo(f"study figure written to {out}")
        return
    refuse_as_weights(weights, "plot")
    checkpoint = weights_file.load(weights)
    plot_history(checkpoint.history, out, title=f"{weights} ({checkpoint.dataset.title})")
    typer.echo(f"curves written to {out}")


@app.command()
@guarded
def serve(
    weights: Annotated[Path, typer.Argument(help="A weights file written by nnctl train.")] = Path("weights.npz"),
    host: Annotated[str, typer.Option(help="Address to listen on; other than 127.0.0.1 opens it to other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
) -> None:
    """A page in the browser: draw a digit and watch the network read it (the serve extra)."""
    from nnctl.cli.swapped import refuse_as_weights
    from nnctl.serve.server import serve as run_server

    refuse_as_weights(weights, "serve")
    run_server(weights, host, port, open_browser, say=typer.echo,
               warn=lambda text: typer.echo(text, err=True))


@data_app.command("download")
@guarded
def data_download(data_dir: DataDir = None, dataset: DatasetName = "mnist") -> None:
    """Fetch and verify the four files of MNIST (or --dataset) ahead of time."""
    from nnctl.cli import render
    from nnctl.cli.progress import DownloadBars
    from nnctl.data.datasets import get_dataset
    from nnctl.data.mnist import inspect_cache, load_mnist, resolve_data_dir

    console = _console()
    described = get_dataset(dataset)
    load_mnist(data_dir, observer=DownloadBars(console), dataset=described)
    render.cache_info(console, inspect_cache(data_dir, described), resolve_data_dir(data_dir),
                      described.title)


@data_app.command("info")
@guarded
def data_info(data_dir: DataDir = None, dataset: DatasetName = "mnist") -> None:
    """Where the files of MNIST (or --dataset) are, their sizes, whether they verify."""
    from nnctl.cli import render
    from nnctl.data.datasets import get_dataset
    from nnctl.data.mnist import inspect_cache, resolve_data_dir

    described = get_dataset(dataset)
    files = inspect_cache(data_dir, described)
    render.cache_info(_console(), files, resolve_data_dir(data_dir), described.title)
    if not all(f.verified for f in files):
        again = "" if dataset == "mnist" else f" --dataset {dataset}"
        typer.echo(f"some files are missing or do not verify: run `nnctl data download{again}`",
                   err=True)
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
