"""A network from the model section of a config: one layer object per entry, in order.

A dense layer's `dropout:` becomes a dropout layer after it, and a dense layer on a
(channels, height, width) input gets a flatten layer before it. Weights are drawn in
config order, so a dense-only config draws exactly what `Network.create` draws.
"""

from __future__ import annotations

import numpy as np

from nnctl.activations import get_activation
from nnctl.initializers import default_for, init_weights
from nnctl.layers.base import Layer, Shape
from nnctl.layers.batch_norm import BatchNorm
from nnctl.layers.conv import Conv2D
from nnctl.layers.dense import Dense
from nnctl.layers.dropout import Dropout
from nnctl.layers.flatten import Flatten
from nnctl.layers.pool import AvgPool, MaxPool
from nnctl.network import Network


def input_shape(model) -> Shape:
    """model.input as a shape: (values,) or (channels, height, width)."""
    return tuple(model.input) if isinstance(model.input, (list, tuple)) else (model.input,)


def _weights(init: str, activation: str, fan_in: int, fan_out: int, rng, dtype):
    name = default_for(activation) if init == "auto" else init
    return init_weights(name, fan_in, fan_out, rng, dtype), np.zeros(fan_out, dtype)


def build_network(model, rng: np.random.Generator, dtype=np.float32) -> Network:
    """Fresh weights for the layers a validated ModelConfig lists."""
    dtype = np.dtype(dtype)
    start = shape = input_shape(model)
    layers: list[Layer] = []
    for index, spec in enumerate(model.layers):
        kind = getattr(spec, "type", "dense")
        if kind == "dense" and len(shape) == 3:
            layers.append(Flatten(index, shape, dtype))
            shape = layers[-1].output_shape
        if kind in ("dense", "conv", "batch_norm"):
            activation = get_activation(spec.activation, **spec.activation_params())
        if kind == "dense":
            w, b = _weights(model.init, spec.activation, shape[0], spec.units, rng, dtype)
            layers.append(Dense(index, w, b, activation))
            if spec.dropout:
                layers.append(Dropout(index, layers[-1].output_shape, spec.dropout))
        elif kind == "conv":
            kh, kw = spec.kernel
            w, b = _weights(model.init, spec.activation, shape[0] * kh * kw, spec.filters, rng,
                            dtype)
            padding = tuple(spec.padding) if isinstance(spec.padding, list) else spec.padding
            layers.append(Conv2D(index, shape, w, b, (kh, kw), tuple(spec.stride), padding,
                                 activation))
        elif kind in ("max_pool", "avg_pool"):
            pool = MaxPool if kind == "max_pool" else AvgPool
            layers.append(pool(index, shape, tuple(spec.size), tuple(spec.stride), dtype))
        elif kind == "flatten":
            layers.append(Flatten(index, shape, dtype))
        elif kind == "dropout":
            layers.append(Dropout(index, shape, spec.rate))
        elif kind == "batch_norm":
            layers.append(BatchNorm(index, shape, activation, spec.momentum, spec.epsilon, dtype))
        else:
            raise ValueError(f"layer {index}: unknown type {kind!r}")
        shape = layers[-1].output_shape
    return Network(layers, start)
