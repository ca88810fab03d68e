"""A feedforward network of dense layers, and backpropagation, in the tutorials' notation.

A batch is a matrix with one sample per row, so the tutorials' z = W a + b for a column a
becomes Z = A W^T + b for the rows of A. W has shape (fan_out, fan_in) as in the tutorials.
Backpropagation, for the output error delta_L = dL/dz_L:

    dL/dW_l = delta_l^T A_{l-1}        dL/db_l = sum over the batch of delta_l
    delta_{l-1} = (delta_l W_l) * f'_{l-1}(z_{l-1})

The loss already averages over the batch (it divides by n), so these sums are the averaged
gradients of mini-batch SGD. All intermediate arrays live in a workspace that is reused from
batch to batch, so a training step allocates almost nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nnctl.activations import Activation
from nnctl.blas import affine, product
from nnctl.initializers import default_for, init_weights
from nnctl.losses import Loss
from nnctl.parameter import Parameter

Array = np.ndarray


class _Workspace:
    """The z, a and delta matrices of every layer for one batch size."""

    def __init__(self, widths: Sequence[int], rows: int, dtype: np.dtype):
        self.z = [np.empty((rows, width), dtype) for width in widths]
        self.a = [np.empty((rows, width), dtype) for width in widths]
        self.delta = [np.empty((rows, width), dtype) for width in widths]
        self.ones = np.ones(rows, dtype)  # sum over the batch as a product: 3x faster
        self.keep: list[Array | None] = [None] * len(widths)  # dropout masks, 1/(1-p) or 0
        self.dropped: list[Array | None] = [None] * len(widths)

    def output(self, layer: int) -> Array:
        """What the next layer sees: the activations, after dropout when it was applied."""
        dropped = self.dropped[layer]
        return self.a[layer] if dropped is None else dropped


class Network:
    """Dense layers z_l = W_l a_{l-1} + b_l, a_l = f_l(z_l), for l = 1..L."""

    def __init__(self, weights: Sequence[Array], biases: Sequence[Array],
                 activations: Sequence[Activation], dropout: Sequence[float] | None = None):
        if not (len(weights) == len(biases) == len(activations) >= 1):
            raise ValueError("need one weight matrix, bias vector and activation per layer")
        for index, (w, b) in enumerate(zip(weights, biases)):
            if w.ndim != 2 or b.shape != (w.shape[0],):
                raise ValueError(f"layer {index}: W {w.shape} and b {b.shape} do not match")
            if index and w.shape[1] != weights[index - 1].shape[0]:
                raise ValueError(
                    f"layer {index}: W has {w.shape[1]} inputs, the layer before has "
                    f"{weights[index - 1].shape[0]} outputs"
                )
        self.activations = list(activations)
        self.dropout = list(dropout) if dropout is not None else [0.0] * len(self.activations)
        if len(self.dropout) != len(self.activations) or self.dropout[-1] != 0.0:
            raise ValueError("dropout needs one rate per layer, 0 for the output layer")
        self.params: list[Parameter] = []
        for index, (w, b) in enumerate(zip(weights, biases)):
            self.params.append(Parameter.of(f"W{index}", np.ascontiguousarray(w), True))
            self.params.append(Parameter.of(f"b{index}", np.ascontiguousarray(b), False))
        self._workspaces: dict[int, _Workspace] = {}

    @classmethod
    def create(cls, sizes: Sequence[int], activations: Sequence[Activation],
               rng: np.random.Generator, init: str | Sequence[str] = "auto",
               dtype=np.float32, dropout: Sequence[float] | None = None) -> "Network":
        """A fresh network; `init` is one name for all layers, a name per layer, or 'auto'."""
        layers = len(sizes) - 1
        names = [init] * layers if isinstance(init, str) else list(init)
        weights, biases = [], []
        for index, activation in enumerate(activations):
            name = default_for(activation.name) if names[index] == "auto" else names[index]
            weights.append(init_weights(name, sizes[index], sizes[index + 1], rng, dtype))
            biases.append(np.zeros(sizes[index + 1], dtype=dtype))
        return cls(weights, biases, activations, dropout)

    @property
    def weights(self) -> list[Array]:
        return [p.value for p in self.params[0::2]]

    @property
    def biases(self) -> list[Array]:
        return [p.value for p in self.params[1::2]]

    @property
    def sizes(self) -> list[int]:
        return [self.params[0].value.shape[1]] + [w.shape[0] for w in self.weights]

    @property
    def dtype(self) -> np.dtype:
        return self.params[0].value.dtype

    def parameter_count(self) -> int:
        return sum(p.value.size for p in self.params)

    def _workspace(self, rows: int) -> _Workspace:
        workspace = self._workspaces.get(rows)
        if workspace is None:
            if len(self._workspaces) >= 4:
                self._workspaces.clear()
            workspace = self._workspaces[rows] = _Workspace(self.sizes[1:], rows, self.dtype)
        return workspace

    def _forward_into(self, x: Array, ws: _Workspace,
                      rng: np.random.Generator | None = None) -> None:
        """The forward pass; with `rng`, inverted dropout on the layers that have a rate:
        a unit is kept with probability 1 - p and scaled by 1/(1 - p), so nothing changes
        at inference."""
        a = x
        for layer, activation in enumerate(self.activations):
            w, b = self.params[2 * layer].value, self.params[2 * layer + 1].value
            z = ws.z[layer]
            affine(z, a, w, b)
            activation.forward(z, ws.a[layer])
            a = ws.a[layer]
            rate = self.dropout[layer]
            if rng is not None and rate > 0.0:
                keep = rng.random(a.shape, dtype=a.dtype) >= rate
                ws.keep[layer] = keep * np.asarray(1.0 / (1.0 - rate), a.dtype)
                ws.dropped[layer] = a = a * ws.keep[layer]
            else:
                ws.keep[layer] = ws.dropped[layer] = None

    def forward(self, x: Array, chunk: int = 4096) -> Array:
        """The output activations for every row of x, computed in chunks of rows."""
        x = np.asarray(x, dtype=self.dtype)
        out = np.empty((len(x), self.sizes[-1]), dtype=self.dtype)
        for start, _, output in self.forward_chunks(x, chunk):
            out[start:start + len(output)] = output
        return out

    def forward_chunks(self, x: Array, chunk: int = 4096):
        """Yield (start row, z_L, a_L) chunk by chunk; the arrays are reused between chunks."""
        x = np.asarray(x, dtype=self.dtype)
        for start in range(0, len(x), chunk):
            rows = x[start:start + chunk]
            ws = self._workspace(len(rows))
            self._forward_into(rows, ws)
            yield start, ws.z[-1], ws.a[-1]

    def loss(self, x: Array, y: Array, loss: Loss,
             rng: np.random.Generator | None = None) -> float:
        """The batch's mean loss, by the same route backprop takes (fused or general)."""
        ws = self._workspace(len(x))
        self._forward_into(np.asarray(x, dtype=self.dtype), ws, rng)
        if loss.natural_output == self.activations[-1].name:
            return loss.fused_value(ws.z[-1], y)
        return loss.value(ws.a[-1], y)

    def backprop(self, x: Array, y: Array, loss: Loss, want_loss: bool = True,
                 rng: np.random.Generator | None = None, grad_scale: float = 1.0,
                 factored: bool = False) -> tuple[float, Array]:
        """Fill every parameter's .grad with grad_scale * dL/dparam for the batch (x, y).

        Returns the batch's mean loss (nan when not wanted) and the output activations,
        which stay valid until the next call with the same batch size. With `rng`, dropout
        is applied (training); without, the network is deterministic. Backprop is linear in
        the output error, so `grad_scale` (an optimizer's learning rate) scales that one
        small matrix and every gradient follows. `factored` leaves each gradient as its
        factors (Parameter.factors) for the optimizer, valid until the next call."""
        ws = self._workspace(len(x))
        self._forward_into(x, ws, rng)
        output = self.activations[-1]
        z, a, delta = ws.z[-1], ws.a[-1], ws.delta[-1]
        if loss.natural_output == output.name:
            value = loss.fused_value(z, y, a) if want_loss else float("nan")
            loss.fused_delta(a, y, delta, grad_scale)
        else:
            value = loss.value(a, y) if want_loss else float("nan")
            np.copyto(delta, loss.gradient(a, y))
            output.backward(z, a, delta)
            if grad_scale != 1.0:
                delta *= grad_scale
        self._backward(x, ws, factored)
        return value, a

    def _backward(self, x: Array, ws: _Workspace, factored: bool = False) -> None:
        for layer in range(len(self.activations) - 1, -1, -1):
            w, b = self.params[2 * layer], self.params[2 * layer + 1]
            delta = ws.delta[layer]
            a_prev = x if layer == 0 else ws.output(layer - 1)
            if factored:
                w.factors, b.factors = (delta, a_prev), (delta, ws.ones)
            else:
                w.factors = b.factors = None
                np.matmul(delta.T, a_prev, out=w.grad)
                np.matmul(ws.ones, delta, out=b.grad)
            if layer:
                below = ws.delta[layer - 1]
                product(below, delta, w.value)
                if ws.keep[layer - 1] is not None:
                    below *= ws.keep[layer - 1]
                self.activations[layer - 1].backward(ws.z[layer - 1], ws.a[layer - 1], below)
