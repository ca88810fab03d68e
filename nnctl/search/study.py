"""A search as an Optuna study in a database: the objective, the workers, the trials' table.

The study lives in the storage (SQLite by default, any database Optuna supports for many
machines), never in a process: every worker, here or on another machine, opens the same
study by name, asks it for a trial, trains, reports the validation accuracy after every
epoch (the pruner may stop the trial there) and tells the result. A worker keeps a heartbeat
on its running trial; a trial whose worker died (SIGKILL, a lost machine) goes stale and the
next worker to start a trial marks it failed. Ctrl-C marks the running trials failed.

`--trials N` is the study's budget, not the command's: trials are run until the study holds
N of them (complete, pruned, running, or failed by their own config), so that the same
command run again resumes a stopped search and N machines share one budget. Trials that
failed because their worker was interrupted or lost do not count: they are run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnctl.errors import NnctlError, UsageError
from nnctl.extras import install_command
from nnctl.search.space import Dimension, apply

INSTALL_HINT = ("nnctl tune needs Optuna; install it with: "
                + install_command("optuna>=4.0", "threadpoolctl>=3.1"))
DRIVER_HINT = ("the {scheme} storage needs its database driver; for PostgreSQL: "
               + install_command("psycopg[binary]>=3.1"))
PRUNERS = ("median", "halving", "hyperband", "none")
METADATA = "nnctl"  # the study's user attribute holding the config it searches


class SearchInterrupted(NnctlError):
    """Ctrl-C during a search: the running trials are marked failed, the study kept."""

    exit_code = 130


class TrialFailed(Exception):
    """A trial that cannot finish because of its own sampled config (invalid, diverged)."""


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(jobs: int) -> int:
    """BLAS threads each of `jobs` workers gets, so that jobs x threads fits the cores."""
    return max(1, cores() // jobs)


def redact(url: str) -> str:
    """A storage URL as it may be printed: without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: say it as given, minus any user info
        return url.split("@")[-1] if "@" in url else url


def default_storage(out: Path | None) -> str:
    """SQLite file tune.db beside the output file (or in the current directory)."""
    folder = out.parent if out is not None else Path(".")
    return f"sqlite:///{folder / 'tune.db'}"


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs, picklable so that worker processes get it whole."""

    storage: str
    study: str
    base: dict  # the config without search:, overrides applied
    dimensions: tuple[Dimension, ...]
    source: str  # the config file, for messages
    trials: int = 20
    timeout: float | None = None
    pruner: str = "median"
    heartbeat: int = 10  # seconds between a running trial's heartbeats
    data_dir: str | None = None
    threads: int = 0  # BLAS threads; 0: leave as they are
    parent: int = 0  # the pid that started this worker; it stops when that one is gone

    @property
    def digest(self) -> str:
        spec = {"config": self.base, "search": [asdict(d) for d in self.dimensions]}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def open_storage(url: str, heartbeat: int | None = None, existing: bool = False):
    """An Optuna RDB storage; one-line errors for a missing driver or an unreachable server.
    With `existing`, a SQLite file that is not there is an error, not made empty."""
    optuna = require_optuna()
    from sqlalchemy.exc import ArgumentError

    shown, scheme = redact(url), url.split(":", 1)[0]
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise UsageError(f"{url}: the directory {folder} does not exist")
        if existing and not Path(url.removeprefix("sqlite:///")).is_file():
            raise UsageError(f"{url}: no such study storage (nnctl tune makes it)")
        engine = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes
    else:
        engine = {"pool_pre_ping": True}
    if scheme in ("postgresql", "postgres"):  # psycopg 3, whatever SQLAlchemy's default
        url = "postgresql+psycopg://" + url.split("://", 1)[-1]
    beat = {} if heartbeat is None else {"heartbeat_interval": heartbeat,
                                         "grace_period": 3 * heartbeat}
    last: Exception | None = None
    for attempt in range(3):  # two machines creating the tables at once: one retries
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **beat)
        except ImportError:
            raise UsageError(DRIVER_HINT.format(scheme=scheme)) from None
        except (ValueError, ArgumentError) as error:
            raise UsageError(f"--storage {shown}: {error}") from None
        except Exception as error:  # SQLAlchemy's connection and schema errors
            last = error
            time.sleep(0.5 + attempt)
    first = str(last).strip().splitlines()[0] if str(last).strip() else type(last).__name__
    raise NnctlError(f"cannot open the study storage {shown}: {first}")


def make_pruner(name: str, epochs: int):
    optuna = require_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"--pruner must be one of {', '.join(PRUNERS)}, not {name!r}")


def open_study(settings: Settings, storage=None, create: bool = True, check: bool = True):
    """The study by name, created with this config when new; refused when it was started
    from another config (its trials would not be comparable) unless `check` is off."""
    optuna = require_optuna()
    storage = storage or open_storage(settings.storage)
    sampler = optuna.samplers.TPESampler(constant_liar=True)  # workers do not repeat a point
    pruner = make_pruner(settings.pruner, settings.base.get("training", {}).get("epochs", 10))
    where = f"study {settings.study!r} in {redact(settings.storage)}"
    if create:
        try:
            study = optuna.create_study(storage=storage, study_name=settings.study,
                                        direction="maximize", sampler=sampler, pruner=pruner,
                                        load_if_exists=True)
        except ValueError as error:  # an existing study with another direction
            raise UsageError(f"{where}: {error}") from None
    else:
        try:
            study = optuna.load_study(study_name=settings.study, storage=storage,
                                      sampler=sampler, pruner=pruner)
        except KeyError:
            raise UsageError(f"{where}: no such study") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UsageError(f"{where} minimises; it was not made by nnctl tune")
    mine = {"config": settings.base, "search": [asdict(d) for d in settings.dimensions],
            "source": settings.source, "digest": settings.digest}
    theirs = study.user_attrs.get(METADATA)
    if theirs is None and create:
        study.set_user_attr(METADATA, mine)
    elif theirs is None:
        raise UsageError(f"{where} was not made by nnctl tune")
    elif check and theirs.get("digest") != settings.digest:
        origin = theirs.get("source", "another config") if theirs else "elsewhere"
        raise UsageError(f"{where} was started from {origin} with other settings (config, "
                         "search or --epochs); run it with those, or name a new one with --study")
    return study


def counted(study) -> int:
    """The trials that use up the budget (see the module's docstring)."""
    from optuna.trial import TrialState

    total = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.WAITING:  # enqueued: still to run
            continue
        if trial.state != TrialState.FAIL or "error" in trial.user_attrs:
            total += 1
    return total


class Objective:
    """One trial: sample, validate, train with validation after every epoch, report."""

    def __init__(self, settings: Settings, workdir: Path):
        self.settings, self.workdir = settings, workdir
        self._splits: tuple[str, Any] | None = None

    def suggest(self, trial) -> dict[str, Any]:
        values = {}
        for d in self.settings.dimensions:
            if d.kind == "choice":
                values[d.key] = trial.suggest_categorical(d.key, list(d.choices))
            elif d.kind == "int":
                values[d.key] = trial.suggest_int(d.key, d.low, d.high, step=d.step or 1,
                                                  log=d.log)
            else:
                values[d.key] = trial.suggest_float(d.key, d.low, d.high, step=d.step, log=d.log)
        return values

    def splits_for(self, config):
        """The data, prepared once per worker (again only when a trial's data keys change)."""
        from nnctl.experiment import prepare_data

        key = json.dumps([asdict(config.data), config.training.dtype], sort_keys=True)
        if self._splits is None or self._splits[0] != key:
            self._splits = None
            self._splits = (key, prepare_data(config, self.settings.data_dir))
        return self._splits[1]

    def __call__(self, trial) -> float:
        import optuna

        from nnctl.config import validate
        from nnctl.errors import ConfigError
        from nnctl.experiment import TrainingInterrupted, train
        from nnctl.trainer import TrainingDiverged

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("blas_threads", blas_threads())
        raw = apply(self.settings.base, list(self.settings.dimensions), self.suggest(trial))
        try:
            config = validate(raw, f"{self.settings.source} (trial {trial.number})")
        except ConfigError as error:
            trial.set_user_attr("error", str(error).splitlines()[0])
            raise TrialFailed(str(error)) from None
        started = time.perf_counter()

        def on_epoch(report) -> None:
            accuracy = report.evaluations["validation"].accuracy
            trial.report(accuracy, report.epoch)
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {report.epoch}: validation {accuracy:.4f}")

        try:
            result = train(config, self.workdir / "trial.npz", self.settings.data_dir,
                           on_epoch=on_epoch, on_batch=Interruption.check,
                           splits=self.splits_for(config), test=False)
        except TrainingDiverged as error:
            trial.set_user_attr("error", str(error))
            raise TrialFailed(str(error)) from None
        except TrainingInterrupted:
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt from None
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        final = result.restored_epoch or result.history[-1]["epoch"]
        row = next(r for r in result.history if r["epoch"] == final)
        return row["evaluations"]["validation"]["accuracy"]


class Interruption:
    """Ctrl-C taken at a safe point: the signal only asks, and the trial stops at its next
    batch, never in the middle of a write to the storage (which would leave its session
    unable to mark the trial failed). Worker processes ignore further SIGINTs (the
    terminal's and the one their parent forwards); on its own, a second Ctrl-C stops at once."""

    requested = False

    @classmethod
    def install(cls, worker_process: bool) -> None:
        cls.requested = False

        def handle(signum, frame) -> None:
            if cls.requested and not worker_process:
                raise KeyboardInterrupt
            cls.requested = True
            if worker_process:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

        signal.signal(signal.SIGINT, handle)

    @classmethod
    def check(cls, *args) -> None:
        if cls.requested:
            raise KeyboardInterrupt


def work(settings: Settings) -> None:
    """Run trials until the study's budget is used, the timeout passes, or Ctrl-C."""
    previous = signal.getsignal(signal.SIGINT)
    Interruption.install(worker_process=bool(settings.parent))
    try:
        _work(settings)
    finally:
        signal.signal(signal.SIGINT, previous)
    if Interruption.requested:
        raise KeyboardInterrupt


def _work(settings: Settings) -> None:
    optuna = require_optuna()
    limits = _blas_limits(settings.threads)
    storage = open_storage(settings.storage, settings.heartbeat)
    study = open_study(settings, storage, create=False)
    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout

    def keep_going(study, trial=None) -> None:
        orphaned = settings.parent and os.getppid() != settings.parent
        late = deadline is not None and time.monotonic() >= deadline
        if Interruption.requested or orphaned or late or counted(study) >= settings.trials:
            study.stop()

    with limits, tempfile.TemporaryDirectory(prefix="nnctl-trial-") as workdir:
        optuna.storages.fail_stale_trials(study)
        if counted(study) >= settings.trials:
            return
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        study.optimize(Objective(settings, Path(workdir)), timeout=remaining,
                       callbacks=[keep_going], catch=(TrialFailed,), gc_after_trial=False)


def blas_threads() -> int:
    """The most threads any loaded BLAS library will use, as threadpoolctl reports it."""
    from threadpoolctl import threadpool_info

    return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"),
               default=0)


def _blas_limits(threads: int):
    import contextlib

    if threads <= 0:
        return contextlib.nullcontext()
    import numpy  # noqa: F401 - its BLAS must be loaded for the limit to reach it
    from threadpoolctl import threadpool_limits

    from nnctl.threads import limit

    limit(threads)  # training's own threads too, not only the BLAS's
    return threadpool_limits(limits=threads, user_api="blas")


def _worker_main(settings: Settings) -> None:
    """A worker process: errors become one line on stderr and an exit code."""

    try:
        work(settings)
    except KeyboardInterrupt:
        sys.exit(130)
    except NnctlError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


def run(settings: Settings, jobs: int = 1, poll=None, interval: float = 1.0) -> None:
    """The search: the study made, then `jobs` workers on this machine until done.

    With jobs > 1 the workers are processes, each BLAS-limited to `settings.threads`;
    `poll()` is called every `interval` seconds while they run. Ctrl-C interrupts every
    worker (their running trials are marked failed) and raises SearchInterrupted."""
    import multiprocessing

    open_study(settings, open_storage(settings.storage))  # before the workers: no race
    resume = f"run the same command again to resume the study {settings.study!r}"
    if jobs == 1:
        try:
            work(settings)
        except KeyboardInterrupt:
            raise SearchInterrupted(f"interrupted; the running trial is marked failed; "
                                    f"{resume}") from None
        return
    context = multiprocessing.get_context("spawn")
    worker = dataclasses.replace(settings, parent=os.getpid())
    processes = [context.Process(target=_worker_main, args=(worker,), name=f"nnctl-worker-{i}")
                 for i in range(jobs)]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            for process in processes:
                process.join(timeout=interval / len(processes))
            if poll is not None:
                poll()
    except KeyboardInterrupt:
        for process in processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join(timeout=60)
        raise SearchInterrupted(f"interrupted; the running trials are marked failed; "
                                f"{resume}") from None
    codes = [p.exitcode for p in processes]
    if any(code for code in codes):
        raise NnctlError(f"{sum(1 for c in codes if c)} of {jobs} workers failed "
                         f"(exit codes {', '.join(str(c) for c in codes)}); see their errors above")


@dataclass(frozen=True)
class TrialRow:
    """One trial as the table and --json show it."""

    number: int
    state: str  # complete | pruned | fail | running | waiting
    value: float | None  # the objective: validation accuracy of the final weights
    latest: float | None  # the last reported validation accuracy
    epochs: int  # epochs reported
    seconds: float | None
    params: dict = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None  # host:pid that ran it

    def as_dict(self) -> dict:
        return asdict(self)


def rows(study) -> list[TrialRow]:
    """The study's trials, oldest first."""
    table = []
    for trial in study.get_trials(deepcopy=False):
        steps = trial.intermediate_values
        last = max(steps) if steps else None
        seconds = trial.user_attrs.get("seconds")
        if trial.datetime_complete and trial.datetime_start:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        error = trial.user_attrs.get("error")
        if trial.state.name == "FAIL" and not error:
            error = ("interrupted" if trial.user_attrs.get("interrupted")
                     else "its worker stopped (killed or lost)")
        table.append(TrialRow(trial.number, trial.state.name.lower(), trial.value,
                              steps[last] if last is not None else None, last or 0, seconds,
                              dict(trial.params), error, trial.user_attrs.get("worker")))
    return table


def best_config(study) -> tuple[dict, TrialRow] | None:
    """The best complete trial's full config (without search:) and its row, if any."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return None
    best = max(done, key=lambda t: (t.value, -t.number))
    meta = study.user_attrs[METADATA]
    dimensions = [Dimension(**{**d, "path": tuple(d["path"]), "choices": tuple(d["choices"])})
                  for d in meta["search"]]
    row = next(r for r in rows(study) if r.number == best.number)
    return apply(meta["config"], dimensions, best.params), row
