"""Batch normalisation (Ioffe and Szegedy, 2015), per unit after a dense layer and per
channel after a conv layer (over the batch and every pixel), then an activation.

With m values x_k of one feature in the batch (m = N, or N H W for a channel):

    mu = 1/m sum x_k    var = 1/m sum (x_k - mu)^2    xhat = (x - mu) / sqrt(var + eps)
    z = gamma xhat + beta        a = f(z)

Backward, from delta = dL/dz (sums over the m values):

    dL/dgamma = sum delta xhat        dL/dbeta = sum delta
    dL/dx = gamma / sqrt(var + eps) (delta - (dL/dbeta + xhat dL/dgamma) / m)

Training normalises with the batch's mu and var and moves the running statistics toward
them, running = momentum running + (1 - momentum) batch (the variance unbiased, m / (m-1));
inference normalises with the running statistics, which the weights file keeps.

In training a row's output depends on every row of the batch through mu and var, so the
training passes are written as steps that exchange sums (`forward_steps`, `backward_steps`):
one batch cut in shards run at once (nnctl/shards.py) still normalises over the whole batch.
"""

from __future__ import annotations

import numpy as np

from nnctl.activations import Activation
from nnctl.layers.base import Activated, Array, Shape, Steps, activation_text, alone
from nnctl.parameter import Parameter


class BatchNorm(Activated):
    kind = "batch_norm"
    couples_rows = True

    def __init__(self, index: int, shape: Shape, activation: Activation, momentum: float = 0.9,
                 epsilon: float = 1e-5, dtype=np.float32):
        super().__init__(index, shape, shape)
        features = shape[0]
        self.activation, self.momentum, self.epsilon = activation, float(momentum), float(epsilon)
        self.params = [Parameter.of(f"gamma{index}", np.ones(features, dtype), False),
                       Parameter.of(f"beta{index}", np.zeros(features, dtype), False)]
        self.running_mean = np.zeros(features, dtype)
        self.running_var = np.ones(features, dtype)

    def _allocate(self, n: int) -> dict[str, Array]:
        rows = n if len(self.input_shape) == 1 else n * self.input_shape[1] * self.input_shape[2]
        features, dtype = self.input_shape[0], self.dtype
        return {"xhat": np.empty((rows, features), dtype), "z": np.empty((rows, features), dtype),
                "a": np.empty((rows, features), dtype), "ones": np.ones(rows, dtype),
                "dx": np.empty((rows, features), dtype)}

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        if training:
            return alone(self.forward_steps(x))
        ws = self._ws = self.workspace(len(x), self._allocate)
        x2 = x.reshape(-1, self.input_shape[0])  # channels last: one column per channel
        gamma, beta = self.params
        self.z = z = ws["z"]
        scale = gamma.value / np.sqrt(self.running_var + self.epsilon)  # z = x scale + shift
        np.multiply(x2, scale, out=z)
        z += beta.value - self.running_mean * scale
        self._activate(ws)
        return self.a.reshape(x.shape)

    def forward_steps(self, x: Array) -> Steps:
        """Training's forward pass over this layer's rows of the batch, as steps: it yields
        its sums (of x, then of (x - mu)^2, per feature) and is sent the whole batch's, so
        that shards of one batch (nnctl/shards.py) normalise with the batch's statistics."""
        ws = self._ws = self.workspace(len(x), self._allocate)
        x2 = x.reshape(-1, self.input_shape[0])
        xhat, ones, z = ws["xhat"], ws["ones"], ws["z"]
        gamma, beta = self.params
        self.z = z
        total, m = yield ones @ x2, len(x2)
        self.m = m
        mean = total / m
        np.subtract(x2, mean, out=xhat)
        np.square(xhat, out=z)
        (squares,) = yield (ones @ z,)
        var = squares / m
        if self.lead:  # one shard of a batch moves the running statistics, once
            keep = self.momentum
            self.running_mean *= keep
            self.running_mean += (1.0 - keep) * mean
            self.running_var *= keep
            self.running_var += (1.0 - keep) * var * (m / max(m - 1, 1))
        self.inv_std = 1.0 / np.sqrt(var + self.epsilon)
        xhat *= self.inv_std
        np.multiply(xhat, gamma.value, out=z)
        z += beta.value
        self._activate(ws)
        return self.a.reshape(x.shape)

    def backward(self, delta: Array, need_input_grad: bool, factored: bool) -> Array | None:
        return alone(self.backward_steps(delta, need_input_grad))

    def backward_z(self, dz: Array, need_input_grad: bool, factored: bool) -> Array | None:
        return alone(self.backward_z_steps(dz, need_input_grad))

    def backward_steps(self, delta: Array, need_input_grad: bool) -> Steps:
        dz = delta.reshape(self.z.shape)
        self._activation_backward(dz)
        return (yield from self.backward_z_steps(dz, need_input_grad))

    def backward_z_steps(self, dz: Array, need_input_grad: bool) -> Steps:
        """Backward as steps: gamma's and beta's gradients over this layer's rows go into
        .grad and are yielded; dL/dx needs the whole batch's, which it is sent."""
        gamma, beta = self.params
        ws = self._ws
        xhat, ones = ws["xhat"], ws["ones"]
        gamma.factors = beta.factors = None
        np.matmul(ones, dz * xhat, out=gamma.grad)
        np.matmul(ones, dz, out=beta.grad)
        dgamma, dbeta = yield gamma.grad, beta.grad  # read only from here on
        if not need_input_grad:
            return None
        dx = ws["dx"]
        np.multiply(xhat, dgamma / self.m, out=dx)
        dx += dbeta / self.m
        np.subtract(dz, dx, out=dx)
        dx *= gamma.value * self.inv_std
        if len(self.input_shape) == 1:
            return dx
        channels, height, width = self.input_shape
        return dx.reshape(-1, height, width, channels)

    def arrays(self) -> dict[str, Array]:
        return {**super().arrays(), f"mean{self.index}": self.running_mean,
                f"var{self.index}": self.running_var}

    def load_arrays(self, arrays: dict[str, Array]) -> None:
        super().load_arrays(arrays)
        self.running_mean[...] = arrays[f"mean{self.index}"]
        self.running_var[...] = arrays[f"var{self.index}"]

    def describe(self) -> str:
        return activation_text(self.activation)
