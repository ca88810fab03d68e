"""From a validated Config to a trained, saved network, and from a weights file to figures.

This is what `nnctl train` and `nnctl evaluate` do, as library calls: load and split the
data, fit the scaler on the training images, build the network, loss and optimizer, train
with a checkpoint after every epoch, and report.
"""

from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nnctl import threads
from nnctl.activations import get_activation
from nnctl.augment import augment
from nnctl.config import Config
from nnctl.data.download import DownloadObserver
from nnctl.data.mnist import NUM_CLASSES, load_mnist
from nnctl.data.scaler import MinMaxScaler
from nnctl.errors import NnctlError, UsageError
from nnctl.losses import Loss, get_loss
from nnctl.metrics import ClassFigures, confusion_matrix, per_class
from nnctl.network import Network
from nnctl.optimizers import Adam, Optimizer, SGD
from nnctl.schedules import learning_rate
from nnctl.trainer import EpochReport, TrainingDiverged, evaluate, fit
from nnctl.weights import Checkpoint, check_writable, save

Labelled = tuple[np.ndarray, np.ndarray]


class TrainingInterrupted(NnctlError):
    """Ctrl-C during training; the last completed epoch is saved."""

    exit_code = 130


@dataclass(frozen=True)
class Splits:
    train: Labelled  # raw uint8 pixels: training scales each batch as it gathers it
    validation: Labelled | None
    test: Labelled
    scaler: MinMaxScaler


def prepare_data(config: Config, data_dir: str | Path | None = None,
                 observer: DownloadObserver | None = None) -> Splits:
    """MNIST with the last `validation` training images held out and the scaler fitted on
    the remaining training images only. Validation and test are scaled to [0, 1] in the
    config's dtype; the training images stay uint8 (see `train`)."""
    mnist = load_mnist(data_dir or config.data.dir, observer=observer)
    keep = len(mnist.train_images) - config.data.validation
    train_x, train_y = mnist.train_images[:keep], mnist.train_labels[:keep]
    scaler = MinMaxScaler.fit(train_x, config.data.scaling)
    dtype = np.dtype(config.training.dtype)
    validation = None
    if config.data.validation:
        validation = (scaler.transform(mnist.train_images[keep:], dtype),
                      mnist.train_labels[keep:])
    return Splits((train_x, train_y), validation,
                  (scaler.transform(mnist.test_images, dtype), mnist.test_labels), scaler)


def build_network(config: Config, rng: np.random.Generator) -> Network:
    activations = [get_activation(layer.activation, **layer.activation_params())
                   for layer in config.model.layers]
    return Network.create(config.sizes, activations, rng, config.model.init,
                          np.dtype(config.training.dtype),
                          [layer.dropout for layer in config.model.layers])


def build_schedule(config: Config) -> Callable[[int], float]:
    t, s = config.training, config.training.schedule
    return functools.partial(learning_rate, s.name, t.learning_rate, epochs=t.epochs,
                             warmup=s.warmup, step_size=s.step_size, gamma=s.gamma,
                             minimum=s.min_learning_rate)


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
          command: str = "nnctl train CONFIG") -> TrainingResult:
    """Train as the config says, saving a resumable checkpoint at `out` after every epoch.

    `on_start(network)` is called once the data is ready and the network built or restored;
    `command` is how the user started this run, for the message that says how to resume."""
    out = Path(out)
    started = time.perf_counter()
    thread_count = threads.resolve(config.training.threads)  # a bad NNCTL_THREADS fails here
    splits = prepare_data(config, data_dir, observer)
    rng = np.random.default_rng(config.training.seed)
    network = build_network(config, rng)
    optimizer = build_optimizer(config)
    history: list[dict] = []
    first = 1
    if resume is not None:
        network, history, first = _restore(resume, config, splits, rng, optimizer)
    loss = get_loss(config.loss)
    eval_sets = {"test": splits.test}
    if splits.validation is not None:
        eval_sets = {"validation": splits.validation, **eval_sets}

    patience = config.training.early_stopping
    best: dict = {"accuracy": -1.0, "epoch": 0, "params": None}

    def save_state(epochs_done: int | None) -> None:
        """A resumable checkpoint; with epochs_done None, weights and history only."""
        if epochs_done is None:
            save(out, Checkpoint(network, splits.scaler, config, history))
            return
        state = {"epochs_done": epochs_done, "rng": rng.bit_generator.state,
                 "optimizer_steps": optimizer.steps}
        save(out, Checkpoint(network, splits.scaler, config, history, state, optimizer.state))

    def checkpoint(report: EpochReport) -> bool:
        """Save after every epoch; with early stopping, say when to stop."""
        if not all(np.isfinite(p.value).all() for p in network.params):
            raise TrainingDiverged(
                f"training diverged in epoch {report.epoch} (weights became nan or infinite) "
                f"at learning rate {optimizer.learning_rate:g}; try a smaller learning rate"
            )
        history.append(report.as_dict())
        save_state(report.epoch)
        if on_epoch is not None:
            on_epoch(report)
        if not patience:
            return False
        accuracy = report.evaluations["validation"].accuracy
        if accuracy > best["accuracy"]:
            best.update(accuracy=accuracy, epoch=report.epoch,
                        params=[p.value.copy() for p in network.params])
        return report.epoch - best["epoch"] >= patience

    if first <= config.training.epochs:
        _fail_early_if_unwritable(out)
    if on_start is not None:
        on_start(network)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported, not warned
            fit(network, loss, optimizer, *splits.train, epochs=config.training.epochs,
                batch_size=config.training.batch_size, rng=rng, eval_sets=eval_sets,
                on_epoch=checkpoint, on_batch=on_batch, first_epoch=first,
                schedule=build_schedule(config), augment=build_augmentation(config),
                transform=splits.scaler.transformer(network.dtype), threads=thread_count)
    except KeyboardInterrupt:
        done = history[-1]["epoch"] if history else 0
        where = (f"the weights of epoch {done} are in {out}; continue with: {command} "
                 f"--resume {out}") if done else "no epoch was completed, nothing saved"
        raise TrainingInterrupted(f"interrupted; {where}") from None
    restored = 0
    if best["params"] is not None and best["epoch"] != history[-1]["epoch"]:
        for p, value in zip(network.params, best["params"]):
            p.value[...] = value
        restored = best["epoch"]
        save_state(None)  # the best epoch's weights with the last epoch's state would not resume
    epoch, metric = best_epoch(history)
    return TrainingResult(history, epoch, metric, time.perf_counter() - started, out, restored)


def _fail_early_if_unwritable(out: Path) -> None:
    """Fail before training, not after the first epoch, when the weights cannot be written."""
    directory = check_writable(out)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise NnctlError(f"{out}: cannot write there ({error.strerror})") from None


def _restore(resume: Checkpoint, config: Config, splits: Splits, rng: np.random.Generator,
             optimizer: Optimizer) -> tuple[Network, list[dict], int]:
    """Continue where the checkpoint stopped: weights, optimizer state, shuffling, history."""
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
    optimizer.state = {slot: list(values) for slot, values in resume.optimizer_state.items()}
    return resume.network, list(resume.history), done + 1


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


@threads.applied
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
