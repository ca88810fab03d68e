"""`nnctl tune`: settings from the options, the search run, a live table of its trials.

The table is read from the study's storage once a second, so it shows every worker's
trials, this machine's and the others'.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nnctl.errors import NnctlError, UsageError
from nnctl.search import study as search
from nnctl.search.space import load_space

LIVE_ROWS = 20
STATE_STYLES = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan"}


def short_names(keys: list[str]) -> dict[str, str]:
    """Column headers: the key's last part, or more of it where two keys end alike."""
    names = {}
    for key in keys:
        parts = key.replace("[", ".").replace("]", "").split(".")
        for size in range(1, len(parts) + 1):
            name = ".".join(parts[-size:])
            if sum(k.replace("[", ".").replace("]", "").endswith(name) for k in keys) == 1:
                break
        names[key] = name
    return names


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def trial_table(rows: list[search.TrialRow], keys: list[str], last: int | None = None,
                title: str = "") -> Table:
    """Number, sampled values, validation accuracy, the best so far, state, epochs, time."""
    table = Table(box=box.SIMPLE_HEAD, title=title or None, title_justify="left")
    names = short_names(keys)
    table.add_column("trial", justify="right")
    for key in keys:
        table.add_column(names[key], justify="right")
    for name in ("val acc", "best so far", "state", "epochs", "seconds"):
        table.add_column(name, justify="left" if name == "state" else "right")
    best = None
    shown = []
    for row in rows:
        if row.state == "complete" and (best is None or row.value > best):
            best = row.value
        accuracy = row.value if row.state == "complete" else row.latest
        state = row.state if row.state != "fail" else f"fail: {row.error}"
        shown.append([str(row.number)] + [_value(row.params.get(k, "")) for k in keys] +
                     [_percent(accuracy), _percent(best), Text(state, STATE_STYLES.get(row.state, "")),
                      str(row.epochs or "-"),
                      "-" if row.seconds is None else f"{row.seconds:.1f}"])
    for cells in shown[-last:] if last else shown:
        table.add_row(*cells)
    return table


def summary(rows: list[search.TrialRow]) -> str:
    counts = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials"


def write_config(path: Path, raw: dict, header: str) -> None:
    """The best config as YAML, written beside the target and renamed over it."""
    import yaml

    text = "".join(f"# {line}\n" for line in header.splitlines())
    text += yaml.safe_dump(raw, sort_keys=False, default_flow_style=None)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{path}: the directory {folder} does not exist")
    partial = folder / f".{path.name}.partial"
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise NnctlError(f"{path}: cannot write ({error.strerror})") from None


def tune(config: Path, trials: int, timeout: float | None, jobs: int, storage: str | None,
         study_name: str | None, out: Path | None, epochs: int | None, pruner: str,
         heartbeat: int, report: bool, data_dir: Path | None, as_json: bool) -> None:
    """The command's body: see `nnctl tune --help`."""
    if jobs < 1 or trials < 1:
        raise UsageError("--jobs and --trials must be 1 or more")
    if pruner not in search.PRUNERS:
        raise UsageError(f"--pruner must be one of {', '.join(search.PRUNERS)}, not {pruner!r}")
    overrides = {"training.epochs": epochs} if epochs is not None else {}
    base, dimensions = load_space(config, overrides)
    if not (base.get("data") or {}).get("validation"):
        raise UsageError(f"{config}: data.validation: a search needs validation images to "
                         "choose on (the test set is never used to choose); set, say, 5000")
    search.require_optuna()
    settings = search.Settings(
        storage=storage or search.default_storage(out), study=study_name or config.stem,
        base=base, dimensions=tuple(dimensions), source=str(config), trials=trials,
        timeout=timeout, pruner=pruner, heartbeat=heartbeat,
        data_dir=str(data_dir) if data_dir else None,
        threads=search.threads_per_worker(jobs))
    console = Console(highlight=False, quiet=as_json)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 200  # a log keeps the table's columns whole
    keys = [d.key for d in dimensions]
    where = f"study '{settings.study}' in {search.redact(settings.storage)}"
    monitor = search.open_study(settings, search.open_storage(settings.storage, existing=report),
                                create=not report, check=not report)
    if not report:
        console.print(f"{where}: {len(keys)} keys searched, budget {trials} trials "
                      f"({search.counted(monitor)} in the study), {jobs} worker"
                      f"{'s' if jobs > 1 else ''} x {settings.threads} BLAS thread"
                      f"{'s' if settings.threads > 1 else ''}, pruner {pruner}")
        for d in dimensions:
            console.print(f"  {d.key}: {d.describe()}")
        _run(settings, jobs, console, monitor, keys, out)
    final = search.rows(monitor)
    if as_json:
        print(json.dumps(_as_json(monitor, settings, final)))
    else:
        console.print(trial_table(final, keys, title=f"{where}: {summary(final)}"))
        _print_best(console, monitor)
    if out is not None:
        _write_best(monitor, out, settings, console)


def _run(settings, jobs, console, monitor, keys, out) -> None:
    live = None
    if console.is_terminal:
        live = Live(console=console, refresh_per_second=1, transient=True,
                    get_renderable=lambda: _live_view(monitor, keys))
    try:
        if live is not None:
            with live:
                search.run(settings, jobs)
        else:
            search.run(settings, jobs)
    except search.SearchInterrupted:
        if out is not None:
            _write_best(monitor, out, settings, console)
        raise


def _live_view(monitor, keys):
    rows = search.rows(monitor)
    return Group(trial_table(rows, keys, last=LIVE_ROWS),
                 Text(f"{summary(rows)}; Ctrl-C stops (the running trials are marked failed)"))


def _print_best(console: Console, monitor) -> None:
    best = search.best_config(monitor)
    if best is None:
        console.print("no trial has completed yet")
        return
    _, row = best
    values = ", ".join(f"{k}={_value(v)}" for k, v in row.params.items())
    console.print(f"best: trial {row.number}, validation accuracy {_percent(row.value)} "
                  f"({values})")


def _write_best(monitor, out: Path, settings, console: Console) -> None:
    best = search.best_config(monitor)
    if best is None:
        return
    raw, row = best
    header = (f"The best trial ({row.number}) of study '{settings.study}', validation accuracy "
              f"{_percent(row.value)},\nsearched from {settings.source} with nnctl tune. "
              f"Train it with: nnctl train {out}")
    write_config(out, raw, header)
    console.print(f"best config written to {out}; train it with: nnctl train {out}")


def _as_json(monitor, settings, rows) -> dict:
    best = search.best_config(monitor)
    return {
        "study": settings.study,
        "storage": search.redact(settings.storage),
        "objective": "validation accuracy",
        "trials": [row.as_dict() for row in rows],
        "best": None if best is None else {**best[1].as_dict(), "config": best[0]},
    }
