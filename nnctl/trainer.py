"""Mini-batch SGD over a dataset: shuffle, slice, backprop, step; report every epoch.

The engine knows nothing of the terminal: it hands an EpochReport to `on_epoch` and the
batch count to `on_batch`, and the CLI draws them.

Training loss and accuracy are the running means over the epoch's batches, taken from the
forward passes backprop makes anyway (as Keras reports them): the weights move during the
epoch, so they are a little behind the end-of-epoch weights. Evaluation sets get a full
forward pass with the end-of-epoch weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from nnctl.errors import NnctlError
from nnctl.losses import Loss, one_hot
from nnctl.network import Network
from nnctl.optimizers import Optimizer
from nnctl.threads import applied as thread_policy


class TrainingDiverged(NnctlError):
    """The loss became nan, infinite or orders of magnitude larger than at the start: the
    learning rate is too large for this network."""


EXPLOSION = 1e3  # a batch loss this many times the first (or 1, if larger) is divergence


def exploded(value: float, reference: float | None) -> bool:
    """Whether a batch loss says training diverged: not finite, or far above where this
    run started (a float64 run can stay finite with absurd weights)."""
    if not math.isfinite(value):
        return True
    return reference is not None and value > EXPLOSION * max(reference, 1.0)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    samples: int


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    train_accuracy: float
    seconds: float
    learning_rate: float
    evaluations: dict[str, Evaluation] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BatchLog:
    """The running figures of an epoch so far, for a log line every N batches."""

    epoch: int
    batch: int
    batches: int
    train_loss: float
    train_accuracy: float


def targets_for(loss: Loss, labels: np.ndarray, classes: int, dtype) -> np.ndarray:
    """What the loss compares the output with: integer labels or one-hot rows."""
    return labels if loss.targets == "index" else one_hot(labels, classes, dtype)


def evaluate(network: Network, loss: Loss, x: np.ndarray, labels: np.ndarray,
             chunk: int = 4096, predicted: np.ndarray | None = None) -> Evaluation:
    """Mean loss and accuracy over (x, labels), with the output's fused loss where it has one;
    the predicted class of every row goes into `predicted` when one is given."""
    classes = network.sizes[-1]
    fused = loss.natural_output == network.activations[-1].name
    total_loss, correct = 0.0, 0
    for start, z, a in network.forward_chunks(x, chunk):
        y = labels[start:start + len(a)]
        target = targets_for(loss, y, classes, a.dtype)
        batch_loss = loss.fused_value(z, target, a) if fused else loss.value(a, target)
        total_loss += batch_loss * len(a)
        guesses = a.argmax(axis=1)
        if predicted is not None:
            predicted[start:start + len(a)] = guesses
        correct += int(np.count_nonzero(guesses == y))
    samples = len(x)
    return Evaluation(total_loss / max(samples, 1), correct / max(samples, 1), samples)


@thread_policy
def fit(network: Network, loss: Loss, optimizer: Optimizer, x: np.ndarray,
        labels: np.ndarray, *, epochs: int, batch_size: int, rng: np.random.Generator,
        eval_sets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
        on_epoch: Callable[[EpochReport], bool | None] | None = None,
        on_batch: Callable[[int, int, int], None] | None = None,
        first_epoch: int = 1,
        schedule: Callable[[int], float] | None = None,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        transform: Callable[[np.ndarray, np.ndarray], None] | None = None,
        log_every: int = 0,
        on_log: Callable[[BatchLog], None] | None = None,
        threads: int | str | None = None,
        ) -> list[EpochReport]:
    """Train for epochs first_epoch..epochs; `rng` drives shuffling, dropout and augmentation.

    `on_batch(epoch, done, total)` is called after every batch, `on_epoch(report)` after
    every epoch (returning True stops training: early stopping). `schedule(epoch)` sets the
    learning rate at the start of each epoch; `augment(batch, rng)` transforms each batch.
    With `transform(raw, out)`, x stays as given (say uint8 pixels) and each gathered batch
    is turned into network inputs in `out`; without, x is used in the network's dtype.
    With `log_every` N, `on_log` gets the epoch's running loss and accuracy every N batches.
    `threads` (a count or "auto"; None: NNCTL_THREADS, else auto) is how many threads the
    large products run on, with the BLAS on one thread in each (nnctl/threads.py): the
    weights come out the same whatever it is."""
    if transform is None:
        x = np.asarray(x, dtype=network.dtype)
    n = len(x)
    targets = targets_for(loss, labels, network.sizes[-1], network.dtype)
    batches = math.ceil(n / batch_size)
    buffers = {}
    reports = []
    dropout_rng = rng if any(network.dropout) else None
    predicted = np.empty(n, np.intp)
    reference = None  # the first batch's loss
    for epoch in range(first_epoch, epochs + 1):
        started = time.perf_counter()
        if schedule is not None:
            optimizer.learning_rate = schedule(epoch)
        scale = optimizer.gradient_scale
        order = rng.permutation(n)
        loss_sum = 0.0
        for batch in range(batches):
            start = batch * batch_size
            index = order[start:start + batch_size]
            rows = len(index)
            if rows not in buffers:
                buffers[rows] = (np.empty((rows, x.shape[1]), x.dtype) if transform else None,
                                 np.empty((rows, x.shape[1]), network.dtype),
                                 np.empty((rows,) + targets.shape[1:], targets.dtype))
            raw, xb, yb = buffers[rows]
            # The indices are a permutation, so mode="clip" never clips; it only spares the
            # bounds-checked, buffered copy NumPy makes for out= in the default mode.
            if transform is None:
                np.take(x, index, axis=0, out=xb, mode="clip")
            else:
                np.take(x, index, axis=0, out=raw, mode="clip")
                transform(raw, xb)
            np.take(targets, index, axis=0, out=yb, mode="clip")
            inputs = xb if augment is None else augment(xb, rng)
            value, output = network.backprop(inputs, yb, loss, rng=dropout_rng, grad_scale=scale,
                                             factored=True)
            if exploded(value, reference):
                what = f"is {value}" if not math.isfinite(value) else (
                    f"rose from {reference:.3g} to {value:.3g}")
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch} (loss {what}) at learning rate "
                    f"{optimizer.learning_rate:g}; try a smaller learning rate"
                )
            if reference is None:
                reference = value
            optimizer.step(network.params, scale)
            loss_sum += value * rows
            np.argmax(output, axis=1, out=predicted[start:start + rows])
            if on_batch is not None:
                on_batch(epoch, batch + 1, batches)
            if log_every and on_log is not None and (batch + 1) % log_every == 0:
                done = start + rows
                right = np.count_nonzero(predicted[:done] == labels[order[:done]])
                on_log(BatchLog(epoch, batch + 1, batches, loss_sum / done, right / done))
        correct = int(np.count_nonzero(predicted == labels[order]))
        evaluations = {
            name: evaluate(network, loss, ex, ey) for name, (ex, ey) in (eval_sets or {}).items()
        }
        report = EpochReport(epoch, loss_sum / n, correct / n, time.perf_counter() - started,
                             optimizer.learning_rate, evaluations)
        reports.append(report)
        if on_epoch is not None and on_epoch(report):
            break
    return reports
