"""Inverted dropout: in training, each value is kept with probability 1 - p and scaled by
1/(1 - p), so nothing changes at inference. Backward multiplies by the same mask."""

from __future__ import annotations

import numpy as np

from nnctl.layers.base import Array, Layer, Shape


class Dropout(Layer):
    kind = "dropout"

    def __init__(self, index: int, shape: Shape, rate: float):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"layer {index}: dropout rate {rate} is not in [0, 1)")
        super().__init__(index, shape, shape)
        self.rate = float(rate)
        self.keep: Array | None = None  # 1/(1 - p) where kept, 0 where dropped

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        """Drops only when given a random generator (training with dropout on)."""
        if rng is None or self.rate == 0.0:
            self.keep = None
            return x
        keep = rng.random(x.shape, dtype=x.dtype) >= self.rate
        self.keep = keep * np.asarray(1.0 / (1.0 - self.rate), x.dtype)
        return x * self.keep

    def backward(self, delta: Array, need_input_grad: bool, factored: bool) -> Array | None:
        if need_input_grad and self.keep is not None:
            delta *= self.keep.reshape(delta.shape)
        return delta if need_input_grad else None

    def describe(self) -> str:
        return f"rate {self.rate:g}"
