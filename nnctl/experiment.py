"""From a validated Config to a trained, saved network, and from a weights file to figures.

This is what `nnctl train` and `nnctl evaluate` do, as library calls: load and split the
data, fit the scaler on the training images, build the network, loss and optimizer, train
with a checkpoint after every epoch, and report.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nnctl import threads
from nnctl.augment import augment
from nnctl.config import Config
from nnctl.data.download import DownloadObserver
from nnctl.data.datasets import Dataset
from nnctl.data.source import load_split, resolve_config
from nnctl.data.scaler import MinMaxScaler
from nnctl.errors import NnctlError, UsageError
from nnctl.layers import build as layers
from nnctl.losses import Loss, get_loss
from nnctl.memory import check_memory
from nnctl.metrics import ClassFigures, averages, confusion_matrix, per_class
from nnctl.monitor import best_of, improves, score
from nnctl.network import Network
from nnctl.optimizers import Adam, Optimizer, SGD
from nnctl.schedules import learning_rate
from nnctl.signals import describe as describe_stop, exit_code as stop_exit_code
from nnctl.trainer import BatchLog, EpochReport, TrainingDiverged, evaluate, fit
from nnctl.weights import Checkpoint, check_writable, save

Labelled = tuple[np.ndarray, np.ndarray]
LAST_WEIGHTS_SLOT = "last"  # save-best files: the last epoch's parameters, to resume from
MAX_WEIGHT = 1e15  # no trained network comes near: a weight this large means divergence


class TrainingInterrupted(NnctlError):
    """Ctrl-C (or SIGTERM, SIGHUP) during training; the last completed epoch is saved."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Splits:
    train: Labelled  # raw uint8 pixels: training scales each batch as it gathers it
    validation: Labelled | None
    test: Labelled
    scaler: MinMaxScaler
    dataset: Dataset


def prepare_data(config: Config, data_dir: str | Path | None = None,
                 observer: DownloadObserver | None = None) -> Splits:
    """The config's dataset with the last `validation` training images held out and the
    scaler fitted on the remaining training images only. Validation and test are scaled in
    the config's dtype; the training images stay uint8 (see `train`). With `data.limit`,
    only the first `limit` images of each file are used (a quick run on a subset)."""
    dataset = resolve_config(config.data)
    directory = data_dir or config.data.dir
    train_images, train_labels = load_split(dataset, "train", directory, observer)
    test_images, test_labels = load_split(dataset, "test", directory, observer)
    keep, held = config.data.sizes(len(train_images))
    limit = config.data.limit or None
    train_x, train_y = train_images[:keep], train_labels[:keep]
    scaler = MinMaxScaler.fit(train_x, config.data.scaling)
    dtype = np.dtype(config.training.dtype)
    validation = None
    if held:
        validation = (scaler.transform(train_images[keep:keep + held], dtype),
                      train_labels[keep:keep + held])
    test_x, test_y = test_images[:limit], test_labels[:limit]
    return Splits((train_x, train_y), validation, (scaler.transform(test_x, dtype), test_y),
                  scaler, dataset)


def build_network(config: Config, rng: np.random.Generator) -> Network:
    return layers.build_network(config.model, rng, np.dtype(config.training.dtype))


def build_schedule(config: Config, history: list[dict] | None = None
                   ) -> Callable[[int], float]:
    """The rate by epoch; the plateau schedule reads the watched metric off `history`, the
    list the run appends each epoch's report to."""
    t, s = config.training, config.training.schedule
    history = history if history is not None else []

    def rate(epoch: int) -> float:
        scores = ([score(entry, s.monitor) for entry in history if entry["epoch"] < epoch]
                  if s.name == "plateau" else ())
        return learning_rate(s.name, t.learning_rate, epoch, t.epochs, warmup=s.warmup,
                             step_size=s.step_size, gamma=s.gamma, minimum=s.min_learning_rate,
                             scores=scores, patience=s.patience, min_delta=s.min_delta)

    return rate


def build_augmentation(config: Config):
    a = config.data.augment
    if not a.active:
        return None
    return functools.partial(augment, shift=a.shift, rotate=a.rotate, scale=a.scale,
                             flip=a.flip, erase=a.erase)


def build_optimizer(config: Config) -> Optimizer:
    o, rate = config.training.optimizer, config.training.learning_rate
    if o.name == "adam":
        return Adam(rate, o.beta1, o.beta2, o.epsilon, o.weight_decay)
    return SGD(rate, o.momentum, o.nesterov, o.weight_decay)


@dataclass(frozen=True)
class TrainingResult:
    history: list[dict]
    best_epoch: int
    best_metric: str
    seconds: float
    path: Path
    restored_epoch: int = 0  # early stopping put this epoch's weights in the file


def best_epoch(history: list[dict], monitor: str = "validation_accuracy",
               min_delta: float = 0.0) -> tuple[int, str]:
    """The epoch with the best monitored validation figure; without a validation split there
    is no best epoch (the test set is only reported, never used to choose), only the last."""
    if not history:
        return 0, ""
    if "validation" not in history[-1]["evaluations"]:
        return history[-1]["epoch"], ""
    return best_of(history, monitor, min_delta)[0], "validation"


def _flatten(value, prefix: str = "") -> dict[str, object]:
    """{'training.epochs': 3, 'model.layers[0].units': 32, ...} from a config's to_dict()."""
    if isinstance(value, dict):
        items = ((f"{prefix}.{key}" if prefix else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{prefix}[{index}]", item) for index, item in enumerate(value))
    else:
        return {prefix: value}
    flat: dict[str, object] = {}
    for path, item in items:
        flat.update(_flatten(item, path))
    return flat


# Settings that say where files go, not what is trained: a resumed run may change them
# (and the thread count, which changes nothing in the weights).
WHERE_NOT_WHAT = ("output", "data.dir", "training.threads")


def check_resumable(resume: Checkpoint, config: Config, source: str = "the weights file",
                    options: dict[str, str] | None = None) -> int:
    """The epoch a resumed run starts at, or a one-line UsageError saying why the checkpoint
    cannot continue under this config: a resumed run is the very same run (schedule, epochs,
    batch size, seed, model, data), continued. `options` names the command-line option that
    set a key, for the message."""
    state = resume.train_state
    if not state:
        stopping = resume.config.training.early_stopping
        if resume.history and stopping.active:
            last = resume.history[-1]["epoch"]
            best = best_epoch(resume.history, stopping.monitor, stopping.min_delta)[0]
            raise UsageError(
                f"{source}: cannot resume: early stopping ended this run after epoch {last} "
                f"and the file holds the weights of its best epoch, {best}, without the "
                f"optimizer state that would continue from epoch {last}")
        raise UsageError(f"{source}: cannot resume: the file has no training state")
    if resume.dataset.name != config.data.dataset:
        raise UsageError(f"{source}: cannot resume: the weights were trained on "
                         f"{resume.dataset.title}, the config names {config.data.dataset}")
    if resume.config.sizes != config.sizes:
        raise UsageError(f"{source}: cannot resume: the weights have layer sizes "
                         f"{resume.config.sizes}, the config {config.sizes}")
    before, now = _flatten(resume.config.to_dict()), _flatten(config.to_dict())
    for key in list(now) + [key for key in before if key not in now]:
        if key in WHERE_NOT_WHAT or before.get(key) == now.get(key):
            continue
        via = f" (from {options[key]})" if options and key in options else ""
        raise UsageError(
            f"{source}: cannot resume: {key} was {_shown(before.get(key))} in that run and is "
            f"{_shown(now.get(key))} now{via}; a resumed run continues the very same run")
    try:
        done = int(state["epochs_done"])
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"{source}: the training state is damaged ({error})") from None
    epochs = config.training.epochs
    if done >= epochs:
        raise UsageError(f"{source}: nothing to resume: all {epochs} epoch{'s' * (epochs != 1)} "
                         "of this run are done (train without --resume to start a new run)")
    return done + 1


def _shown(value: object) -> str:
    return "unset" if value is None else json.dumps(value)


def train(config: Config, out: str | Path, data_dir: str | Path | None = None,
          on_epoch: Callable[[EpochReport], None] | None = None,
          on_batch: Callable[[int, int, int], None] | None = None,
          observer: DownloadObserver | None = None,
          resume: Checkpoint | None = None,
          on_start: Callable[[Network], None] | None = None,
          command: str | None = None, log_every: int = 0,
          on_log: Callable[[BatchLog], None] | None = None, splits: Splits | None = None,
          test: bool = True) -> TrainingResult:
    """Train as the config says, saving a resumable checkpoint at `out` after every epoch.

    `on_start(network)` is called once the data is ready and the network built or restored;
    `command` is the command that continues this run, for the message after an interrupt.
    `splits` reuses data prepared for this config; `test=False` skips the test set's
    evaluation after every epoch (a search chooses on the validation split alone)."""
    out = Path(out)
    started = time.perf_counter()
    thread_count = threads.resolve(config.training.threads)  # a bad NNCTL_THREADS fails here
    if resume is not None:
        check_resumable(resume, config)
    _fail_early_if_unwritable(out)  # before a download, not after the first epoch
    check_memory(config)
    splits = splits or prepare_data(config, data_dir, observer)
    rng = np.random.default_rng(config.training.seed)
    network = build_network(config, rng)
    optimizer = build_optimizer(config)
    history: list[dict] = []
    first = 1
    stopping, save_best = config.training.early_stopping, config.training.save_best
    monitor = stopping.monitor
    best: dict = {"score": -math.inf, "epoch": 0, "params": None}
    if resume is not None:
        network, history, first, saved = _restore(resume, config, splits, rng, optimizer)
        if save_best or stopping.active:
            best["epoch"], best["score"] = best_of(history, monitor, stopping.min_delta)
            if save_best:  # the file's weights are the best epoch's
                best["params"] = saved
    loss = get_loss(config.loss)
    eval_sets = {"test": splits.test} if test else {}
    if splits.validation is not None:
        eval_sets = {"validation": splits.validation, **eval_sets}

    written = {"epoch": 0}  # what the file at `out` holds from this run, for the stop message

    def save_state(epochs_done: int | None) -> None:
        """A resumable checkpoint; with epochs_done None, weights and history only. With
        save_best the file's weights are the best epoch's, and the last epoch's parameters,
        which a resumed run continues from, travel as the resume state's slot 'last'."""
        if epochs_done is None:
            save(out, Checkpoint(network, splits.scaler, config, history, dataset=splits.dataset))
            return
        state = {"epochs_done": epochs_done, "rng": rng.bit_generator.state,
                 "optimizer_steps": optimizer.steps}
        slots = dict(optimizer.state)
        if not (save_best and best["params"] is not None and best["epoch"] != epochs_done):
            save(out, Checkpoint(network, splits.scaler, config, history, state, slots,
                                 splits.dataset))
            written["epoch"] = epochs_done
            return
        slots[LAST_WEIGHTS_SLOT] = [p.value.copy() for p in network.params]
        with _values_swapped(network, best["params"]):
            save(out, Checkpoint(network, splits.scaler, config, history, state, slots,
                                 splits.dataset))
        written["epoch"] = epochs_done

    def checkpoint(report: EpochReport) -> bool:
        """Save after every epoch; with early stopping, say when to stop."""
        largest = max(float(np.abs(p.value).max()) for p in network.params)
        if not np.isfinite(largest) or largest > MAX_WEIGHT:
            what = "nan or infinite" if not np.isfinite(largest) else f"as large as {largest:.1e}"
            raise TrainingDiverged(
                f"training diverged in epoch {report.epoch} (weights became {what}) "
                f"at learning rate {optimizer.learning_rate:g}; try a smaller learning rate"
            )
        history.append(report.as_dict())
        if save_best or stopping.active:
            value = score(history[-1], monitor)
            if improves(value, best["score"], stopping.min_delta):
                best.update(score=value, epoch=report.epoch, params=network.snapshot())
        save_state(report.epoch)
        if on_epoch is not None:
            on_epoch(report)
        return stopping.active and report.epoch - best["epoch"] >= stopping.patience

    if on_start is not None:
        on_start(network)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported, not warned
            fit(network, loss, optimizer, *splits.train, epochs=config.training.epochs,
                batch_size=config.training.batch_size, rng=rng, eval_sets=eval_sets,
                on_epoch=checkpoint, on_batch=on_batch, first_epoch=first,
                schedule=build_schedule(config, history), augment=build_augmentation(config),
                transform=splits.scaler.transformer(network.dtype),
                log_every=log_every, on_log=on_log, threads=thread_count)
    except KeyboardInterrupt as stop:
        done = written["epoch"]
        again = command or f"nnctl train CONFIG --resume {out}"
        untouched = f"; {out} is as it was" if out.exists() else ", nothing saved"
        where = (f"the weights of epoch {done} are in {out}; continue with: {again}"
                 if done else f"no epoch was completed{untouched}")
        raise TrainingInterrupted(f"{describe_stop(stop)}; {where}",
                                  stop_exit_code(stop)) from None
    restored = 0
    if stopping.active and best["params"] is not None and best["epoch"] != history[-1]["epoch"]:
        network.restore(best["params"])  # weights and batch-norm statistics
        restored = best["epoch"]
        save_state(None)  # an early-stopped run is over: its file holds the best weights only
    elif save_best and best["params"] is not None and history:
        restored = best["epoch"] if best["epoch"] != history[-1]["epoch"] else 0
    epoch, metric = best_epoch(history, monitor, stopping.min_delta)
    return TrainingResult(history, epoch, metric, time.perf_counter() - started, out, restored)


@contextlib.contextmanager
def _values_swapped(network: Network, values: dict[str, np.ndarray]):
    """The network holds `values` (a snapshot) inside the block, its own again after it."""
    own = network.snapshot()
    network.restore(values)
    try:
        yield network
    finally:
        network.restore(own)


def _fail_early_if_unwritable(out: Path) -> None:
    """Fail before training, not after the first epoch, when the weights cannot be written."""
    directory = check_writable(out)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise NnctlError(f"{out}: cannot write there ({error.strerror})") from None


def _restore(resume: Checkpoint, config: Config, splits: Splits, rng: np.random.Generator,
             optimizer: Optimizer) -> tuple[Network, list[dict], int, dict[str, np.ndarray]]:
    """Continue where the checkpoint stopped: weights, optimizer state, shuffling, history.
    Also returns the weights the file holds (a save-best file's best epoch)."""
    state = resume.train_state
    try:
        rng.bit_generator.state = state["rng"]
        optimizer.steps = int(state["optimizer_steps"])
        done = int(state["epochs_done"])
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"the weights file's training state is damaged ({error})") from None
    shapes = [p.value.shape for p in resume.network.params]
    for slot, values in resume.optimizer_state.items():
        if [v.shape for v in values] != shapes:
            raise UsageError(f"the weights file's optimizer state '{slot}' does not match")
    slots = {slot: list(values) for slot, values in resume.optimizer_state.items()}
    network = resume.network
    saved = network.snapshot()
    last = slots.pop(LAST_WEIGHTS_SLOT, None)
    if last is not None:  # a save-best file: continue from the last epoch, not the best
        for p, value in zip(network.params, last):
            p.value[...] = value
    optimizer.state = slots
    return network, list(resume.history), done + 1, saved


@dataclass(frozen=True)
class EvaluationReport:
    split: str
    accuracy: float
    loss: float
    samples: int
    confusion: np.ndarray
    classes: list[ClassFigures]
    dataset: str = "MNIST"
    names: tuple[str, ...] = tuple(str(digit) for digit in range(10))

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "dataset": self.dataset,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "samples": self.samples,
            "classes": list(self.names),
            "per_class": [{**vars(c), "name": self.names[c.label]} for c in self.classes],
            "averages": averages(self.classes),
            "confusion": self.confusion.tolist(),
        }


@threads.applied
def evaluate_checkpoint(checkpoint: Checkpoint, split: str = "test",
                        data_dir: str | Path | None = None,
                        observer: DownloadObserver | None = None) -> EvaluationReport:
    """Accuracy, loss, per-class figures and confusion of a trained network on a split; only
    that split is loaded (or downloaded). `validation` is the images training held out."""
    data = checkpoint.config.data
    if split == "validation" and not data.validation:
        raise UsageError("--split validation: these weights were trained without a validation "
                         "split (data.validation is 0)")
    dataset = resolve_config(data)
    if (dataset.image_shape, dataset.num_classes) != (checkpoint.dataset.image_shape,
                                                      checkpoint.dataset.num_classes):
        raise UsageError(f"{dataset.title} is not the data this model was trained on "
                         f"({checkpoint.dataset.title})")
    source = "train" if split == "validation" else split
    images, labels = load_split(dataset, source, data_dir or data.dir, observer)
    if split == "validation":
        keep, held = data.sizes(len(images))
        images, labels = images[keep:keep + held], labels[keep:keep + held]
    network = checkpoint.network
    x = checkpoint.scaler.transform(images, network.dtype)
    loss: Loss = get_loss(checkpoint.config.loss)
    predicted = np.empty(len(labels), dtype=np.intp)
    summary = evaluate(network, loss, x, labels, predicted=predicted)
    names = checkpoint.dataset.classes
    confusion = confusion_matrix(labels, predicted, len(names))
    return EvaluationReport(split, summary.accuracy, summary.loss, summary.samples, confusion,
                            per_class(confusion), checkpoint.dataset.title, names)
