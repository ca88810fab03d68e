"""Learning-rate schedules, by epoch: an optional linear warmup, then constant, step or cosine.

- constant: the base rate.
- step:     base * gamma ** (completed post-warmup epochs // step_size).
- cosine:   min + (base - min) (1 + cos(pi t / T)) / 2, t = post-warmup epochs completed,
            T = post-warmup epochs in all (Loshchilov and Hutter's SGDR, without restarts).
            The rate would reach min one epoch after the last, so the last epoch still
            learns (with min 0 it would otherwise be spent at rate 0), as PyTorch's
            CosineAnnealingLR(T_max=epochs) stepped once an epoch.
Warmup multiplies the rate by epoch / warmup for the first `warmup` epochs.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine")


def learning_rate(name: str, base: float, epoch: int, epochs: int, *, warmup: int = 0,
                  step_size: int = 10, gamma: float = 0.1, minimum: float = 0.0) -> float:
    """The rate for `epoch` (1-based) of `epochs`."""
    if epoch <= warmup:
        return base * epoch / warmup
    done = epoch - warmup - 1
    if name == "step":
        return base * gamma ** (done // step_size)
    if name == "cosine":
        span = max(1, epochs - warmup)
        return minimum + (base - minimum) * 0.5 * (1.0 + math.cos(math.pi * min(done, span) / span))
    return base
