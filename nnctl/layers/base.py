"""The layer protocol every kind of layer follows, and what the activated ones share.

A layer maps a batch to a batch. `forward(x, training, rng)` returns its output (an array it
owns and reuses for the next batch of the same size); `backward(delta, need_input_grad,
factored)` takes delta = dL/d(output), fills its parameters' gradients and returns
dL/d(input), or None when nothing below needs it. Per-sample shapes are written (units,) or
(channels, height, width); in memory a spatial batch is (N, height, width, channels), so
that a pixel's channels are adjacent and im2col copies whole runs of them.

Activated layers (dense, conv, batch_norm) compute z, then a = f(z) in place of a separate
activation layer, and split backward in two: f' first, then `backward_z(dL/dz)`, which the
network calls directly for the output layer when the loss gives dL/dz at once.
"""

from __future__ import annotations

import math
from typing import Callable, Generator

import numpy as np

from nnctl.activations import Activation
from nnctl.parameter import Parameter

Array = np.ndarray
Shape = tuple[int, ...]
# A pass through a layer whose rows depend on each other (batch norm in training), written
# as steps: it yields its partial sums over its rows and is sent the whole batch's; its
# return value is the pass's result.
Steps = Generator[tuple, tuple, "Array | None"]


def alone(steps: Steps):
    """Run `steps` as the whole batch: every partial sum it yields is the batch's sum."""
    try:
        sums = next(steps)
        while True:
            sums = steps.send(sums)
    except StopIteration as finished:
        return finished.value
MAX_WORKSPACES = 4  # batch sizes kept: training's, its last partial batch, evaluation's


class Layer:
    """Base: parameters, shapes, and a workspace of arrays per batch size."""

    kind = ""
    couples_rows = False  # in training, each row's output depends on the other rows
    lead = True  # the one replica of a batch's shards that updates shared state (shards.py)

    def __init__(self, index: int, input_shape: Shape, output_shape: Shape):
        self.index = index  # the layer's place in the config's model.layers: names its arrays
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)
        self.params: list[Parameter] = []
        self._workspaces: dict[int, dict[str, Array]] = {}

    @property
    def dtype(self) -> np.dtype:
        return self.params[0].value.dtype if self.params else np.dtype(np.float32)

    def workspace(self, rows: int, allocate: Callable[[int], dict[str, Array]]
                  ) -> dict[str, Array]:
        """The arrays for a batch of `rows`, made once by `allocate(rows)` and reused."""
        found = self._workspaces.get(rows)
        if found is None:
            if len(self._workspaces) >= MAX_WORKSPACES:
                self._workspaces.clear()
            found = self._workspaces[rows] = allocate(rows)
        return found

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        raise NotImplementedError

    def backward(self, delta: Array, need_input_grad: bool, factored: bool) -> Array | None:
        raise NotImplementedError

    def forward_steps(self, x: Array) -> Steps:
        """Training's forward pass as steps (layers that couple rows)."""
        raise NotImplementedError

    def backward_steps(self, delta: Array, need_input_grad: bool) -> Steps:
        """Backward as steps (layers that couple rows)."""
        raise NotImplementedError

    def arrays(self) -> dict[str, Array]:
        """What the weights file keeps of this layer, by key, in the file's layout."""
        return {p.name: p.value for p in self.params}

    def load_arrays(self, arrays: dict[str, Array]) -> None:
        """Take the values `arrays()` names, shapes already checked, in the file's layout."""
        for p in self.params:
            p.value[...] = arrays[p.name]

    def floats_per_sample(self) -> int:
        """About how many values the workspace holds per sample: bounds inference chunks."""
        return 3 * math.prod(self.output_shape) + math.prod(self.input_shape)

    def describe(self) -> str:
        """A few words for the model summary: the kernel, the rate, the activation."""
        return ""


def activation_text(activation: Activation) -> str:
    return activation.name + "".join(f" {k}={v:g}" for k, v in activation.params.items())


class Activated(Layer):
    """A layer whose output is a = f(z); `self.z`, `self.a` hold the last batch's, as
    (rows, features) matrices."""

    activation: Activation
    z: Array
    a: Array
    _ws: dict[str, Array]  # the workspace of the last forward pass
    max_pool_after = False  # set by Network: the next layer is a max pool

    @property
    def relu_deferred(self) -> bool:
        """Whether this layer's relu is left to the max pool after it, which applies it to
        its outputs, a quarter as many for 2x2 windows: max(relu(z)) = relu(max(z)), and
        each window's gradient goes to the same pixel either way (pool.py)."""
        return self.max_pool_after and self.activation.name == "relu"

    def _activate(self, ws: dict[str, Array]) -> None:
        """a = f(z) into the workspace's a; for the linear activation, or a relu left to
        the next layer, a is z."""
        if self.activation.name == "linear" or self.relu_deferred:
            self.a = self.z
            return
        self.a = ws["a"]
        self.activation.forward(self.z, self.a)

    def _activation_backward(self, dz: Array) -> None:
        """dL/da into dL/dz in place (f' of the activation this layer applied)."""
        if not self.relu_deferred:
            self.activation.backward(self.z, self.a, dz)

    def backward(self, delta: Array, need_input_grad: bool, factored: bool) -> Array | None:
        dz = delta.reshape(self.z.shape)
        self._activation_backward(dz)
        return self.backward_z(dz, need_input_grad, factored)

    def backward_z(self, dz: Array, need_input_grad: bool, factored: bool) -> Array | None:
        """Parameters' gradients and dL/d(input) from dL/dz, a (rows, features) matrix."""
        raise NotImplementedError

    def output_delta(self) -> Array:
        """A matrix shaped like z for the loss to write dL/dz into (output layers)."""
        ws = self._ws
        if "delta" not in ws:
            ws["delta"] = np.empty_like(self.z)
        return ws["delta"]
