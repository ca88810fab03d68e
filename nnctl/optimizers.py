"""Optimizers: they update each Parameter in place from the gradient backprop left in .grad.

L2 weight decay adds `weight_decay * W` to the gradient of weights (not biases), the
gradient of the penalty (weight_decay / 2) ||W||^2.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl.parameter import Parameter


class Optimizer:
    """Base: holds the learning rate (which a schedule may change) and per-parameter state."""

    name = ""

    def __init__(self, learning_rate: float, weight_decay: float = 0.0):
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.steps = 0
        self.state: dict[str, list[np.ndarray]] = {}

    def _decayed(self, p: Parameter) -> np.ndarray:
        if self.weight_decay and p.decays:
            p.grad += self.weight_decay * p.value
        return p.grad

    def _slots(self, key: str, params: list[Parameter]) -> list[np.ndarray]:
        if key not in self.state:
            self.state[key] = [np.zeros_like(p.value) for p in params]
        return self.state[key]

    def step(self, params: list[Parameter]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """W -= lr * dW; with momentum mu, v = mu v + dW and W -= lr * v (Nesterov: W -= lr *
    (dW + mu v)), the formulation of PyTorch, equal to Sutskever's for a constant rate."""

    name = "sgd"

    def __init__(self, learning_rate: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(learning_rate, weight_decay)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def step(self, params: list[Parameter]) -> None:
        self.steps += 1
        lr, mu = self.learning_rate, self.momentum
        velocities = self._slots("velocity", params) if mu else [None] * len(params)
        for p, v in zip(params, velocities):
            g = self._decayed(p)
            if v is not None:
                v *= mu
                v += g
                if self.nesterov:
                    g += mu * v
                else:
                    g = v
            p.value -= lr * g


class Adam(Optimizer):
    """Kingma and Ba's Adam with bias correction; weight decay is added to the gradient."""

    name = "adam"

    def __init__(self, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(learning_rate, weight_decay)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)

    def step(self, params: list[Parameter]) -> None:
        self.steps += 1
        b1, b2 = self.beta1, self.beta2
        first, second = self._slots("m", params), self._slots("v", params)
        correction1 = 1.0 - b1 ** self.steps
        correction2 = 1.0 - b2 ** self.steps
        step_size = self.learning_rate * math.sqrt(correction2) / correction1
        eps = self.epsilon * math.sqrt(correction2)
        for p, m, v in zip(params, first, second):
            g = self._decayed(p)
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p.value -= step_size * m / (np.sqrt(v) + eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
