"""Optimizers: they update each Parameter in place from the gradient backprop left in .grad.

`.grad` holds `grad_scale * dL/dparam`. SGD's update is linear in the gradient, so it asks
for the learning rate as that scale (`gradient_scale`): backprop folds it into the output
error, a batch x classes matrix, and the update becomes W -= grad instead of a multiply over
every weight. Any other scale is divided back out, so `step(params)` after a plain backprop
is ordinary SGD.

L2 weight decay adds `weight_decay * W` to the gradient of weights (not biases), the
gradient of the penalty (weight_decay / 2) ||W||^2.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl.blas import add_product, add_scaled
from nnctl.parameter import Parameter


class Optimizer:
    """Base: holds the learning rate (which a schedule may change) and per-parameter state."""

    name = ""

    def __init__(self, learning_rate: float, weight_decay: float = 0.0):
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.steps = 0
        self.state: dict[str, list[np.ndarray]] = {}

    @property
    def gradient_scale(self) -> float:
        """The factor this optimizer would like backprop to multiply dL/dparam by."""
        return 1.0

    def _gradient(self, p: Parameter, rescale: float, rate: float) -> np.ndarray:
        """p.grad turned into rate * (dL/dparam + weight_decay * W), in place."""
        p.gradient()
        if rescale != 1.0:
            p.grad *= rescale
        if self.weight_decay and p.decays:
            p.grad += (rate * self.weight_decay) * p.value
        return p.grad

    def _slots(self, key: str, params: list[Parameter]) -> list[np.ndarray]:
        if key not in self.state:
            self.state[key] = [np.zeros_like(p.value) for p in params]
        return self.state[key]

    def step(self, params: list[Parameter], grad_scale: float = 1.0) -> None:
        """One update from the gradients in .grad, which hold grad_scale * dL/dparam."""
        raise NotImplementedError


class SGD(Optimizer):
    """W -= lr dW; with momentum mu, v = mu v + lr dW and W -= v (Nesterov: W -= lr dW + mu v),
    the velocity of Nielsen's chapter 3 and Sutskever et al. (2013), a step in weight units."""

    name = "sgd"

    def __init__(self, learning_rate: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(learning_rate, weight_decay)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    @property
    def gradient_scale(self) -> float:
        return self.learning_rate or 1.0  # a zero rate (end of a cosine) cannot be divided out

    def step(self, params: list[Parameter], grad_scale: float = 1.0) -> None:
        self.steps += 1
        lr, mu = self.learning_rate, self.momentum
        rescale = lr / grad_scale
        velocities = self._slots("velocity", params) if mu else [None] * len(params)
        for p, v in zip(params, velocities):
            if p.factors is not None:
                self._step_from_factors(p, v, rescale)
                continue
            g = self._gradient(p, rescale, lr)  # lr * dL/dparam from here on
            if v is not None:
                v *= mu
                v += g
                if self.nesterov:
                    g += mu * v
                else:
                    g = v
            p.value -= g

    def _step_from_factors(self, p: Parameter, v: np.ndarray | None, rescale: float) -> None:
        """The same step with the gradient's product folded into W (or v) by one GEMM and
        the rest done by AXPYs (see blas.py). Weight decay without momentum as W *= 1 -
        lr wd first: W - lr (g + wd W) = (1 - lr wd) W - lr g. Nesterov's W - lr g - mu v'
        as W + mu v - (1 + mu) v', since lr g = v' - mu v; W moves before v' is known, so
        its decay term is kept aside in .grad, which this route leaves unused."""
        left, right = p.take_factors()
        w, mu = p.value, self.momentum
        decay = self.learning_rate * self.weight_decay if p.decays else 0.0
        if v is None:
            if decay:
                w *= 1.0 - decay
            add_product(w, left, right, alpha=-rescale, beta=1.0)
            return
        if self.nesterov:
            if decay:
                np.multiply(w, decay, out=p.grad)
            add_scaled(w, mu, v)
            add_product(v, left, right, alpha=rescale, beta=mu)
            if decay:
                add_scaled(v, 1.0, p.grad)
            add_scaled(w, -(1.0 + mu), v)
            return
        add_product(v, left, right, alpha=rescale, beta=mu)
        if decay:
            add_scaled(v, decay, w)
        add_scaled(w, -1.0, v)


class Adam(Optimizer):
    """Kingma and Ba's Adam with bias correction; weight decay is added to the gradient."""

    name = "adam"

    def __init__(self, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(learning_rate, weight_decay)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)

    def step(self, params: list[Parameter], grad_scale: float = 1.0) -> None:
        self.steps += 1
        b1, b2 = self.beta1, self.beta2
        first, second = self._slots("m", params), self._slots("v", params)
        correction1 = 1.0 - b1 ** self.steps
        correction2 = 1.0 - b2 ** self.steps
        step_size = self.learning_rate * math.sqrt(correction2) / correction1
        eps = self.epsilon * math.sqrt(correction2)
        for p, m, v in zip(params, first, second):
            g = self._gradient(p, 1.0 / grad_scale, 1.0)
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p.value -= step_size * m / (np.sqrt(v) + eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
