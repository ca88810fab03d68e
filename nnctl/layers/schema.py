"""The config of layers other than dense, and the shape check through the whole stack.

A layer entry with a `type` other than dense is read here; the dense entry ({units,
activation}) stays in nnctl/config.py. `check_shapes` walks the stack from model.input
before any work and reports, on the offending layer's line, a kernel or pool larger than
its input, a pool that does not divide its input, a conv or pool on flat values. A dense
layer on a (channels, height, width) input gets an implied flatten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nnctl.layers.conv import output_size, padding_for
from nnctl.layers.pool import pooled_size

TYPES = ("dense", "conv", "max_pool", "avg_pool", "flatten", "dropout", "batch_norm")
MAX_KERNEL = 64
MAX_FILTERS = 4096


@dataclass
class ConvConfig:
    filters: int
    kernel: list[int]  # [height, width]
    activation: str
    stride: list[int] = field(default_factory=lambda: [1, 1])
    padding: Any = "valid"  # valid, same, pixels on every side, or [rows, columns]
    slope: float | None = None
    alpha: float | None = None
    type: str = "conv"

    def activation_params(self) -> dict[str, float]:
        return {k: v for k, v in (("slope", self.slope), ("alpha", self.alpha)) if v is not None}


@dataclass
class PoolConfig:
    type: str
    size: list[int]
    stride: list[int]
    crop: bool = False  # drop the rows and columns a pool that does not divide leaves over


@dataclass
class FlattenConfig:
    type: str = "flatten"


@dataclass
class DropoutConfig:
    rate: float
    type: str = "dropout"


@dataclass
class BatchNormConfig:
    activation: str = "linear"
    momentum: float = 0.9
    epsilon: float = 1e-5
    slope: float | None = None
    alpha: float | None = None
    type: str = "batch_norm"

    def activation_params(self) -> dict[str, float]:
        return {k: v for k, v in (("slope", self.slope), ("alpha", self.alpha)) if v is not None}


KEYS = {
    "conv": ("type", "filters", "kernel", "stride", "padding", "activation", "slope", "alpha"),
    "max_pool": ("type", "size", "stride", "crop"),
    "avg_pool": ("type", "size", "stride", "crop"),
    "flatten": ("type",),
    "dropout": ("type", "rate"),
    "batch_norm": ("type", "activation", "momentum", "epsilon", "slope", "alpha"),
}


def _pair(c, entry: dict, path: str, key: str, default, low: int, high: int):
    """A number or [height, width], as a [height, width] list; None when it is wrong."""
    value = entry.get(key, default)
    if isinstance(value, list) and len(value) == 2:
        pair = [c.integer({key: v}, path, key, None, low, high) for v in value]
        return None if None in pair else pair
    number = c.integer({key: value}, path, key, None, low, high)
    return None if number is None else [number, number]


def _activation(c, entry: dict, path: str, layer, activations, params: dict, default) -> None:
    layer.activation = c.choice(entry, path, "activation", default, tuple(activations))
    for name in ("slope", "alpha"):
        if entry.get(name) is not None:
            if params.get(layer.activation) != name:
                c.fail(f"{path}.{name}", f"{layer.activation} takes no parameter {name!r}")
            else:
                setattr(layer, name, c.number(entry, path, name, None, 0.0,
                                              low_open=name == "alpha"))


def parse_layer(c, entry: dict, path: str, kind: str, activations, params: dict):
    """One non-dense layer entry, already checked to be a mapping of known type."""
    c.section(entry, path, KEYS[kind])
    if kind == "conv":
        layer = ConvConfig(c.integer(entry, path, "filters", None, 1, MAX_FILTERS),
                           _pair(c, entry, path, "kernel", None, 1, MAX_KERNEL), "")
        layer.stride = _pair(c, entry, path, "stride", 1, 1, MAX_KERNEL)
        padding = entry.get("padding", "valid")
        if padding in ("valid", "same"):
            layer.padding = padding
        elif isinstance(padding, str):
            layer.padding = c.choice(entry, path, "padding", "valid", ("valid", "same"))
        else:
            layer.padding = _pair(c, entry, path, "padding", 0, 0, MAX_KERNEL)
            if layer.padding is not None and layer.padding[0] == layer.padding[1]:
                layer.padding = layer.padding[0]
        _activation(c, entry, path, layer, activations, params, None)
        return layer
    if kind in ("max_pool", "avg_pool"):
        size = _pair(c, entry, path, "size", None, 1, MAX_KERNEL)
        stride = _pair(c, entry, path, "stride", size, 1, MAX_KERNEL) if size else None
        return PoolConfig(kind, size, stride, c.flag(entry, path, "crop", False))
    if kind == "flatten":
        return FlattenConfig()
    if kind == "dropout":
        return DropoutConfig(c.number(entry, path, "rate", None, 0.0, 1.0, high_open=True))
    layer = BatchNormConfig(momentum=c.number(entry, path, "momentum", 0.9, 0.0, 1.0,
                                              high_open=True),
                            epsilon=c.number(entry, path, "epsilon", 1e-5, 0.0, low_open=True))
    _activation(c, entry, path, layer, activations, params, "linear")
    return layer


def _shape_text(shape: tuple) -> str:
    return f"{shape[0]} values" if len(shape) == 1 else "x".join(map(str, shape))


def check_shapes(c, input_shape: tuple, layers: list) -> int | None:
    """Walk the stack's shapes, reporting each misfit on its layer's key; returns the
    parameter count when every layer fits, None otherwise."""
    shape, count = tuple(input_shape), 0
    for index, layer in enumerate(layers):
        path = f"model.layers[{index}]"
        kind = getattr(layer, "type", "dense")
        if kind in ("conv", "max_pool", "avg_pool") and len(shape) != 3:
            c.fail(f"{path}.type", f"{kind} needs a (channels, height, width) input; the "
                                   f"layer before gives {_shape_text(shape)} (set model.input "
                                   "to [channels, height, width])")
            return None
        if kind == "dense":
            if layer.units is None:
                return None
            count += (math.prod(shape) + 1) * layer.units
            shape = (layer.units,)
        elif kind == "conv":
            if None in (layer.filters, layer.kernel, layer.stride, layer.padding):
                return None
            size = shape[1:]
            pads = padding_for(size, tuple(layer.kernel), tuple(layer.stride),
                               layer.padding if not isinstance(layer.padding, list)
                               else tuple(layer.padding))
            padded = tuple(n + sum(p) for n, p in zip(size, pads))
            if any(k > n for k, n in zip(layer.kernel, padded)):
                c.fail(f"{path}.kernel", f"a {_shape_text(tuple(layer.kernel))} kernel is "
                                         f"larger than its {_shape_text(padded)} input")
                return None
            out = output_size(size, tuple(layer.kernel), tuple(layer.stride), pads)
            count += (shape[0] * layer.kernel[0] * layer.kernel[1] + 1) * layer.filters
            shape = (layer.filters,) + out
        elif kind in ("max_pool", "avg_pool"):
            if layer.size is None or layer.stride is None:
                return None
            size = shape[1:]
            if any(k > n for k, n in zip(layer.size, size)):
                c.fail(f"{path}.size", f"a {_shape_text(tuple(layer.size))} pool is larger "
                                       f"than its {_shape_text(size)} input")
                return None
            out = pooled_size(size, tuple(layer.size), tuple(layer.stride))
            left = [n - ((o - 1) * s + k) for n, o, s, k in
                    zip(size, out, layer.stride, layer.size)]
            if any(left) and not layer.crop:
                c.fail(f"{path}.size", f"a {_shape_text(tuple(layer.size))} pool with stride "
                                       f"{_shape_text(tuple(layer.stride))} does not divide its "
                                       f"{_shape_text(size)} input (add crop: true to drop the "
                                       "last rows and columns, as Keras and PyTorch do)")
                return None
            shape = (shape[0],) + out
        elif kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "batch_norm":
            count += 2 * shape[0]
    return count

