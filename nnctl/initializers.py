"""Weight initialisation by name. Biases always start at zero.

- he:     N(0, 2 / fan_in)                 keeps relu activations' variance steady
- xavier: U(-l, l), l = sqrt(6 / (fan_in + fan_out))   Glorot's, for tanh and sigmoid
- lecun:  N(0, 1 / fan_in)                 Nielsen's improved initialisation
- small:  N(0, 0.01^2)                     the classic tutorials' "small random values"
"""

from __future__ import annotations

import numpy as np

INITIALIZERS = ("he", "xavier", "glorot", "lecun", "small")
RELU_LIKE = frozenset({"relu", "leaky_relu", "elu", "gelu", "swish", "softplus"})


def default_for(activation: str) -> str:
    return "he" if activation in RELU_LIKE else "xavier"


def init_weights(
    name: str, fan_in: int, fan_out: int, rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """A (fan_out, fan_in) weight matrix, drawn in float64 so every dtype sees the same draw."""
    shape = (fan_out, fan_in)
    if name == "he":
        weights = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif name in ("xavier", "glorot"):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights = rng.uniform(-limit, limit, shape)
    elif name == "lecun":
        weights = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
    elif name == "small":
        weights = rng.standard_normal(shape) * 0.01
    else:
        raise ValueError(f"unknown initialisation {name!r}; known: {', '.join(INITIALIZERS)}")
    return weights.astype(dtype)
