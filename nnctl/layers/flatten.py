"""Flatten: a (channels, height, width) sample becomes one row of C H W values, in that
order (PyTorch's), so a dense layer after it has weights (units, C H W). In memory the
batch is channels-last, so with more than one channel this is a transposing copy."""

from __future__ import annotations

import math

import numpy as np

from nnctl.layers.base import Array, Layer, Shape


class Flatten(Layer):
    kind = "flatten"

    def __init__(self, index: int, input_shape: Shape, dtype=np.float32):
        super().__init__(index, input_shape, (math.prod(input_shape),))
        self._dtype = np.dtype(dtype)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _allocate(self, n: int) -> dict[str, Array]:
        channels, height, width = self.input_shape
        return {"out": np.empty((n, channels, height, width), self._dtype),
                "dx": np.empty((n, height, width, channels), self._dtype)}

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        if len(self.input_shape) != 3:
            return x
        ws = self._ws = self.workspace(len(x), self._allocate)
        np.copyto(ws["out"], x.transpose(0, 3, 1, 2))
        return ws["out"].reshape(len(x), -1)

    def backward(self, delta: Array, need_input_grad: bool, factored: bool) -> Array | None:
        if not need_input_grad or len(self.input_shape) != 3:
            return delta if need_input_grad else None
        dx = self._ws["dx"]
        np.copyto(dx, delta.reshape(self._ws["out"].shape).transpose(0, 2, 3, 1))
        return dx
