"""Activation functions and their derivatives, one small pair of functions each, in one registry.

Every `forward(z, out)` writes f(z) into `out`. Every `backward(z, a, delta)` turns
delta = dL/da into dL/dz = delta * f'(z) in place, using z or a = f(z), whichever is cheaper:
sigmoid' = a (1 - a), tanh' = 1 - a^2, relu' = [z > 0]. Softmax's backward is the
Jacobian-vector product a * (delta - sum(delta * a)), never the per-sample Jacobian matrix.
All forms are stable for large |z|: nothing exponentiates a large positive number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np

Array = np.ndarray


def sigmoid(z: Array, out: Array) -> None:
    """1 / (1 + e^-z), computed as (1 + tanh(z / 2)) / 2, which cannot overflow."""
    np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5


def sigmoid_backward(z: Array, a: Array, delta: Array) -> None:
    delta *= a
    delta *= 1.0 - a


def tanh(z: Array, out: Array) -> None:
    np.tanh(z, out=out)


def tanh_backward(z: Array, a: Array, delta: Array) -> None:
    delta *= 1.0 - a * a


def relu(z: Array, out: Array) -> None:
    np.maximum(z, 0.0, out=out)


def relu_backward(z: Array, a: Array, delta: Array) -> None:
    np.multiply(delta, z > 0.0, out=delta)  # a bool mask multiply is ~6x faster than where=


def leaky_relu(z: Array, out: Array, slope: float = 0.01) -> None:
    """z for z > 0, slope * z otherwise."""
    np.multiply(z, slope, out=out)
    np.copyto(out, z, where=z > 0.0)


def leaky_relu_backward(z: Array, a: Array, delta: Array, slope: float = 0.01) -> None:
    np.multiply(delta, slope, out=delta, where=z <= 0.0)


def elu(z: Array, out: Array, alpha: float = 1.0) -> None:
    """z for z > 0, alpha (e^z - 1) otherwise; exp only sees min(z, 0)."""
    np.minimum(z, 0.0, out=out)
    np.expm1(out, out=out)
    out *= alpha
    np.copyto(out, z, where=z > 0.0)


def elu_backward(z: Array, a: Array, delta: Array, alpha: float = 1.0) -> None:
    """f'(z) = 1 for z > 0, alpha e^z = a + alpha otherwise."""
    np.multiply(delta, a + alpha, out=delta, where=z <= 0.0)


GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715


def gelu(z: Array, out: Array) -> None:
    """GELU in its tanh approximation (Hendrycks and Gimpel; PyTorch's approximate='tanh'):
    z/2 (1 + tanh(c (z + k z^3))), c = sqrt(2/pi), k = 0.044715. NumPy has no erf, and the
    derivative below is the exact derivative of this approximation, so gradients check."""
    np.multiply(z, z, out=out)
    out *= GELU_K * z
    out += z
    out *= GELU_C
    np.tanh(out, out=out)
    out += 1.0
    out *= z
    out *= 0.5


def gelu_backward(z: Array, a: Array, delta: Array) -> None:
    """d/dz = (1 + t)/2 + z/2 (1 - t^2) c (1 + 3k z^2), t = tanh(c (z + k z^3))."""
    z2 = z * z
    t = np.tanh(GELU_C * (z + GELU_K * z2 * z))
    slope = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * z2)
    delta *= slope


def softplus(z: Array, out: Array) -> None:
    """log(1 + e^z) as logaddexp(0, z): no overflow, no loss of precision for large z."""
    np.logaddexp(0.0, z, out=out)


def softplus_backward(z: Array, a: Array, delta: Array) -> None:
    s = np.empty_like(z)
    sigmoid(z, s)
    delta *= s


def swish(z: Array, out: Array) -> None:
    """z * sigmoid(z) (also called SiLU)."""
    sigmoid(z, out)
    out *= z


def swish_backward(z: Array, a: Array, delta: Array) -> None:
    """d/dz = s + z s (1 - s) = s (1 + z (1 - s)), s = sigmoid(z)."""
    s = np.empty_like(z)
    sigmoid(z, s)
    delta *= s * (1.0 + z * (1.0 - s))


def softmax(z: Array, out: Array) -> None:
    """e^z / sum e^z along each row, after subtracting the row maximum."""
    np.subtract(z, z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)


def softmax_backward(z: Array, a: Array, delta: Array) -> None:
    """J^T delta for J = diag(a) - a a^T, per row, without forming J."""
    delta -= np.einsum("ij,ij->i", delta, a)[:, None]
    delta *= a


def linear(z: Array, out: Array) -> None:
    np.copyto(out, z)


def linear_backward(z: Array, a: Array, delta: Array) -> None:
    pass


@dataclass(frozen=True)
class Activation:
    """A named nonlinearity with its parameters bound (leaky_relu's slope, elu's alpha)."""

    name: str
    forward: Callable[[Array, Array], None] = field(repr=False)
    backward: Callable[[Array, Array, Array], None] = field(repr=False)
    params: dict = field(default_factory=dict)


# name -> (forward, backward, default parameters)
REGISTRY: dict[str, tuple[Callable, Callable, dict]] = {
    "sigmoid": (sigmoid, sigmoid_backward, {}),
    "tanh": (tanh, tanh_backward, {}),
    "relu": (relu, relu_backward, {}),
    "leaky_relu": (leaky_relu, leaky_relu_backward, {"slope": 0.01}),
    "elu": (elu, elu_backward, {"alpha": 1.0}),
    "gelu": (gelu, gelu_backward, {}),
    "softplus": (softplus, softplus_backward, {}),
    "swish": (swish, swish_backward, {}),
    "softmax": (softmax, softmax_backward, {}),
    "linear": (linear, linear_backward, {}),
}

OUTPUT_ONLY = frozenset({"softmax"})


def get_activation(name: str, **params: float) -> Activation:
    """Look an activation up by its config name, binding its parameters."""
    try:
        forward, backward, defaults = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(REGISTRY)}") from None
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f"activation {name!r} takes no parameter {sorted(unknown)[0]!r}")
    bound = {**defaults, **params}
    if bound:
        forward, backward = partial(forward, **bound), partial(backward, **bound)
    return Activation(name, forward, backward, bound)
