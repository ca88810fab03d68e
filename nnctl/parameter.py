"""A trainable array and the gradient backprop writes beside it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Parameter:
    name: str
    value: np.ndarray
    grad: np.ndarray
    decays: bool  # L2 weight decay applies to weights, not to biases

    @classmethod
    def of(cls, name: str, value: np.ndarray, decays: bool) -> "Parameter":
        return cls(name, value, np.zeros_like(value), decays)
