"""The dense layer, in the tutorials' notation.

A batch is a matrix with one sample per row, so the tutorials' z = W a + b for a column a
becomes Z = A W^T + b for the rows of A. W has shape (fan_out, fan_in) as in the tutorials.
Backpropagation, for the layer's error delta = dL/dz:

    dL/dW = delta^T A        dL/db = sum over the batch of delta        dL/dA = delta W

and the layer below turns dL/dA into its own delta by multiplying with f'(z) there. The
loss already averages over the batch (it divides by n), so these sums are the averaged
gradients of mini-batch SGD. With `factored`, dL/dW and dL/db are left as their factors
(delta, A) and (delta, ones) for the optimizer to fold into W with one GEMM (see blas.py).
"""

from __future__ import annotations

import numpy as np

from nnctl.activations import Activation
from nnctl.blas import affine, product
from nnctl.layers.base import Activated, Array, activation_text
from nnctl.parameter import Parameter


class Dense(Activated):
    kind = "dense"

    def __init__(self, index: int, w: Array, b: Array, activation: Activation):
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(f"layer {index}: W {w.shape} and b {b.shape} do not match")
        super().__init__(index, (w.shape[1],), (w.shape[0],))
        self.activation = activation
        self.params = [Parameter.of(f"W{index}", np.ascontiguousarray(w), True),
                       Parameter.of(f"b{index}", np.ascontiguousarray(b), False)]

    def _allocate(self, rows: int) -> dict[str, Array]:
        units, dtype = self.output_shape[0], self.dtype
        return {"z": np.empty((rows, units), dtype), "a": np.empty((rows, units), dtype),
                "ones": np.ones(rows, dtype),  # the sum over the batch as a product: 3x faster
                "dx": np.empty((rows, self.input_shape[0]), dtype)}

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        ws = self._ws = self.workspace(len(x), self._allocate)
        self.x, self.z = x, ws["z"]
        affine(self.z, x, self.params[0].value, self.params[1].value)
        self._activate(ws)
        return self.a

    def backward_z(self, dz: Array, need_input_grad: bool, factored: bool) -> Array | None:
        w, b = self.params
        if factored:
            w.factors, b.factors = (dz, self.x), (dz, self._ws["ones"])
        else:
            w.factors = b.factors = None
            np.matmul(dz.T, self.x, out=w.grad)
            np.matmul(self._ws["ones"], dz, out=b.grad)
        if not need_input_grad:
            return None
        dx = self._ws["dx"]
        product(dx, dz, w.value)
        return dx

    def describe(self) -> str:
        return activation_text(self.activation)
