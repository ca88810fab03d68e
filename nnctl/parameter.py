"""A trainable array and the gradient backprop writes beside it.

Backprop may instead leave a gradient as its two factors, dL/dparam = left^T right (for a
weight, the layer's error and the activations below it), while they are still in its
workspace: an optimizer that can use the product directly never forms it (see blas.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Parameter:
    name: str
    value: np.ndarray
    grad: np.ndarray
    decays: bool  # L2 weight decay applies to weights, not to biases
    factors: tuple[np.ndarray, np.ndarray] | None = None  # when set, .grad is not formed yet

    @classmethod
    def of(cls, name: str, value: np.ndarray, decays: bool) -> Parameter:
        return cls(name, value, np.zeros_like(value), decays)

    def gradient(self) -> np.ndarray:
        """.grad, formed from the factors first if backprop left them."""
        if self.factors is not None:
            left, right = self.factors
            np.matmul(left.T, right, out=self.grad)
            self.factors = None
        return self.grad

    def take_factors(self) -> tuple[np.ndarray, np.ndarray] | None:
        factors, self.factors = self.factors, None
        return factors
