"""Learning-rate schedules, by epoch: an optional linear warmup, then constant, step or cosine.

- constant: the base rate.
- step:     base * gamma ** (completed post-warmup epochs // step_size).
- cosine:   min + (base - min) (1 + cos(pi t / T)) / 2, t = post-warmup epochs completed,
            T = post-warmup epochs in all (Loshchilov and Hutter's SGDR, without restarts).
            The rate would reach min one epoch after the last, so the last epoch still
            learns (with min 0 it would otherwise be spent at rate 0), as PyTorch's
            CosineAnnealingLR(T_max=epochs) stepped once an epoch.
- plateau:  base * gamma ** (cuts so far), a cut whenever `patience` epochs in a row have
            not improved the watched validation metric by more than min_delta (Keras's
            ReduceLROnPlateau without cooldown), never below min. It is a function of the
            history, so a resumed run gets the same rates.
Warmup multiplies the rate by epoch / warmup for the first `warmup` epochs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from nnctl.monitor import improves

SCHEDULES = ("constant", "step", "cosine", "plateau")


def learning_rate(name: str, base: float, epoch: int, epochs: int, *, warmup: int = 0,
                  step_size: int = 10, gamma: float = 0.1, minimum: float = 0.0,
                  scores: Sequence[float] = (), patience: int = 2,
                  min_delta: float = 0.0) -> float:
    """The rate for `epoch` (1-based) of `epochs`; `scores` are the watched metric of the
    epochs before it, higher is better (plateau only)."""
    if epoch <= warmup:
        return base * epoch / warmup
    done = epoch - warmup - 1
    if name == "step":
        return base * gamma ** (done // step_size)
    if name == "plateau":
        return plateau_rate(base, scores, patience=patience, factor=gamma, minimum=minimum,
                            min_delta=min_delta)
    if name == "cosine":
        span = max(1, epochs - warmup)
        return minimum + (base - minimum) * 0.5 * (1.0 + math.cos(math.pi * min(done, span) / span))
    return base


def plateau_rate(base: float, scores: Sequence[float], *, patience: int, factor: float,
                 minimum: float = 0.0, min_delta: float = 0.0) -> float:
    """The rate after the epochs whose scores are given: cut by `factor` after every run of
    `patience` epochs without an improvement."""
    rate, best, waited = base, -math.inf, 0
    for value in scores:
        if improves(value, best, min_delta):
            best, waited = value, 0
            continue
        waited += 1
        if waited >= patience:
            rate, waited = max(minimum, rate * factor), 0
    return rate
