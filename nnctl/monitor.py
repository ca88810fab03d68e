"""What "better" means for early stopping, save-best and the plateau schedule.

A monitored metric is read off an epoch's history entry as a score where higher is better
(accuracy as it is, loss negated), so every watcher compares scores the same way, as Keras's
callbacks do with their `mode`: an epoch improves on the best so far when its score beats
it by more than `min_delta`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SPLIT = "validation"


def score(entry: dict, monitor: str) -> float:
    """The monitored metric of one history entry, as a higher-is-better number."""
    split, _, metric = monitor.partition("_")
    value = entry["evaluations"][split][metric]
    return -value if metric == "loss" else value


def improves(value: float, best: float, min_delta: float) -> bool:
    return value > best + min_delta


def best_of(history: Iterable[dict], monitor: str, min_delta: float = 0.0) -> tuple[int, float]:
    """(epoch, score) of the best entry: the first that no later one improves on."""
    best_epoch, best = 0, -math.inf
    for entry in history:
        value = score(entry, monitor)
        if improves(value, best, min_delta):
            best_epoch, best = entry["epoch"], value
    return best_epoch, best
