"""From a validated Config to a trained, saved network, and from a weights file to figures.

This is what `nnctl train` and `nnctl evaluate` do, as library calls: load and split the
data, fit the scaler on the training images, build the network, loss and optimizer, train
with a checkpoint after every epoch, and report.
"""

from __future__ import annotations

import contextlib
import functools
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nnctl.activations import get_activation
from nnctl.augment import augment
from nnctl.config import Config
from nnctl.data.download import DownloadObserver
from nnctl.data.mnist import NUM_CLASSES, load_mnist
from nnctl.data.scaler import MinMaxScaler
from nnctl.errors import NnctlError, UsageError
from nnctl.losses import Loss, get_loss
from nnctl.memory import check_memory
from nnctl.metrics import ClassFigures, confusion_matrix, per_class
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


def prepare_data(config: Config, data_dir: str | Path | None = None,
                 observer: DownloadObserver | None = None) -> Splits:
    """MNIST with the last `validation` training images held out and the scaler fitted on
    the remaining training images only. Validation and test are scaled in the config's
    dtype; the training images stay uint8 (see `train`). With `data.limit`, only the first
    `limit` images of each file are used (a quick run on a subset)."""
    mnist = load_mnist(data_dir or config.data.dir, observer=observer)
    keep, held = config.data.sizes(len(mnist.train_images))
    limit = config.data.limit or None
    train_x, train_y = mnist.train_images[:keep], mnist.train_labels[:keep]
    scaler = MinMaxScaler.fit(train_x, config.data.scaling)
    dtype = np.dtype(config.training.dtype)
    validation = None
    if held:
        validation = (scaler.transform(mnist.train_images[keep:keep + held], dtype),
                      mnist.train_labels[keep:keep + held])
    test_x, test_y = mnist.test_images[:limit], mnist.test_labels[:limit]
    return Splits((train_x, train_y), validation, (scaler.transform(test_x, dtype), test_y),
                  scaler)


def build_network(config: Config, rng: np.random.Generator) -> Network:
    activations = [get_activation(layer.activation, **layer.activation_params())
                   for layer in config.model.layers]
    return Network.create(config.sizes, activations, rng, config.model.init,
                          np.dtype(config.training.dtype),
                          [layer.dropout for layer in config.model.layers])


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
    return functools.partial(augment, shift=a.shift, rotate=a.rotate, scale=a.scale)


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


def best_epoch(history: list[dict]) -> tuple[int, str]:
    """The epoch with the best validation accuracy, or test accuracy when none is held out."""
    if not history:
        return 0, ""
    split = "validation" if "validation" in history[-1]["evaluations"] else "test"
    if split not in history[-1]["evaluations"]:
        return history[-1]["epoch"], ""
    best = max(history, key=lambda r: r["evaluations"][split]["accuracy"])
    return best["epoch"], split


def train(config: Config, out: str | Path, data_dir: str | Path | None = None,
          on_epoch: Callable[[EpochReport], None] | None = None,
          on_batch: Callable[[int, int, int], None] | None = None,
          observer: DownloadObserver | None = None,
          resume: Checkpoint | None = None,
          on_start: Callable[[Network], None] | None = None,
          command: str = "nnctl train CONFIG", log_every: int = 0,
          on_log: Callable[[BatchLog], None] | None = None) -> TrainingResult:
    """Train as the config says, saving a resumable checkpoint at `out` after every epoch.

    `on_start(network)` is called once the data is ready and the network built or restored;
    `command` is how the user started this run, for the message that says how to resume."""
    out = Path(out)
    started = time.perf_counter()
    if resume is None or _epochs_done(resume) < config.training.epochs:
        _fail_early_if_unwritable(out)  # before the download, not after an epoch
    check_memory(config)
    splits = prepare_data(config, data_dir, observer)
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
    eval_sets = {"test": splits.test}
    if splits.validation is not None:
        eval_sets = {"validation": splits.validation, **eval_sets}

    written = {"epoch": 0}  # what the file at `out` holds from this run, for the stop message

    def save_state(epochs_done: int | None) -> None:
        """A resumable checkpoint; with epochs_done None, weights and history only. With
        save_best the file's weights are the best epoch's, and the last epoch's parameters,
        which a resumed run continues from, travel as the resume state's slot 'last'."""
        if epochs_done is None:
            save(out, Checkpoint(network, splits.scaler, config, history))
            return
        state = {"epochs_done": epochs_done, "rng": rng.bit_generator.state,
                 "optimizer_steps": optimizer.steps}
        slots = dict(optimizer.state)
        if not (save_best and best["params"] is not None and best["epoch"] != epochs_done):
            save(out, Checkpoint(network, splits.scaler, config, history, state, slots))
            written["epoch"] = epochs_done
            return
        slots[LAST_WEIGHTS_SLOT] = [p.value.copy() for p in network.params]
        with _values_swapped(network, best["params"]):
            save(out, Checkpoint(network, splits.scaler, config, history, state, slots))
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
                best.update(score=value, epoch=report.epoch,
                            params=[p.value.copy() for p in network.params])
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
                log_every=log_every, on_log=on_log)
    except KeyboardInterrupt as stop:
        done = written["epoch"]
        untouched = f"; {out} is as it was" if out.exists() else ", nothing saved"
        where = (f"the weights of epoch {done} are in {out}; continue with: {command} "
                 f"--resume {out}") if done else f"no epoch was completed{untouched}"
        raise TrainingInterrupted(f"{describe_stop(stop)}; {where}",
                                  stop_exit_code(stop)) from None
    restored = 0
    if stopping.active and best["params"] is not None and best["epoch"] != history[-1]["epoch"]:
        for p, value in zip(network.params, best["params"]):
            p.value[...] = value
        restored = best["epoch"]
        save_state(None)  # an early-stopped run is over: its file holds the best weights only
    elif save_best and best["params"] is not None and history:
        restored = best["epoch"] if best["epoch"] != history[-1]["epoch"] else 0
    epoch, metric = best_epoch(history)
    return TrainingResult(history, epoch, metric, time.perf_counter() - started, out, restored)


def _epochs_done(checkpoint: Checkpoint) -> int:
    done = (checkpoint.train_state or {}).get("epochs_done", 0)
    return done if isinstance(done, int) else 0


@contextlib.contextmanager
def _values_swapped(network: Network, values: list[np.ndarray]):
    """The network holds `values` inside the block, its own parameters again after it."""
    own = [p.value.copy() for p in network.params]
    for p, value in zip(network.params, values):
        p.value[...] = value
    try:
        yield network
    finally:
        for p, value in zip(network.params, own):
            p.value[...] = value


def _fail_early_if_unwritable(out: Path) -> None:
    """Fail before training, not after the first epoch, when the weights cannot be written."""
    directory = check_writable(out)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise NnctlError(f"{out}: cannot write there ({error.strerror})") from None


def _restore(resume: Checkpoint, config: Config, splits: Splits, rng: np.random.Generator,
             optimizer: Optimizer) -> tuple[Network, list[dict], int, list[np.ndarray]]:
    """Continue where the checkpoint stopped: weights, optimizer state, shuffling, history.
    Also returns the weights the file holds (a save-best file's best epoch)."""
    state = resume.train_state
    if not state:
        raise UsageError("the weights file has no training state to resume from")
    if resume.config.sizes != config.sizes:
        raise UsageError(f"cannot resume: the weights have layer sizes {resume.config.sizes}, "
                         f"the config {config.sizes}")
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
    saved = [p.value.copy() for p in network.params]
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

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "samples": self.samples,
            "per_class": [vars(c) for c in self.classes],
            "confusion": self.confusion.tolist(),
        }


def evaluate_checkpoint(checkpoint: Checkpoint, split: str = "test",
                        data_dir: str | Path | None = None,
                        observer: DownloadObserver | None = None) -> EvaluationReport:
    """Accuracy, loss, per-class figures and confusion of a trained network on a split."""
    mnist = load_mnist(data_dir or checkpoint.config.data.dir, observer=observer)
    images, labels = ((mnist.test_images, mnist.test_labels) if split == "test"
                      else (mnist.train_images, mnist.train_labels))
    network = checkpoint.network
    x = checkpoint.scaler.transform(images, network.dtype)
    loss: Loss = get_loss(checkpoint.config.loss)
    predicted = np.empty(len(labels), dtype=np.intp)
    summary = evaluate(network, loss, x, labels, predicted=predicted)
    confusion = confusion_matrix(labels, predicted, NUM_CLASSES)
    return EvaluationReport(split, summary.accuracy, summary.loss, summary.samples, confusion,
                            per_class(confusion))
