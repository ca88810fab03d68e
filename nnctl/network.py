"""A network is a sequence of layers; forward runs them in order, backprop in reverse.

Inputs are rows of flat samples, as the data comes: (N, features), with an image's values
in (channels, height, width) order. A network whose first layer is spatial sees them as a
(N, height, width, channels) batch (a view when there is one channel).

The loss already averages over the batch (it divides by n), so the gradients the layers
sum are the averaged gradients of mini-batch SGD. Every layer keeps its intermediate
arrays in a workspace reused from batch to batch, so a training step allocates almost
nothing. For dense networks `Network.create` builds the tutorials' stack z_l = W_l a_{l-1}
+ b_l, a_l = f_l(z_l); the layers' own modules carry their math.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np

from nnctl.activations import Activation
from nnctl.initializers import default_for, init_weights
from nnctl.layers.base import Activated, Layer, Shape, Steps, alone
from nnctl.layers.dense import Dense
from nnctl.layers.dropout import Dropout
from nnctl.layers.pool import MaxPool
from nnctl.losses import Loss
from nnctl.parameter import Parameter
from nnctl.shards import SHARDS, SMALLEST_SHARD, Shards

Array = np.ndarray
CHUNK_BYTES = 1 << 26  # inference in chunks whose largest workspace stays near 64 MB


class _Activations(list):
    """The activated layers' activations; assigning an item sets that layer's."""

    def __init__(self, layers: list[Activated]):
        super().__init__(layer.activation for layer in layers)
        self._layers = layers

    def __setitem__(self, index, value):
        super().__setitem__(index, value)
        self._layers[index].activation = value


class Network:
    """Layers applied in order to rows of flat samples of `input_shape`."""

    def __init__(self, layers: Sequence[Layer], input_shape: Shape | None = None):
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        self.input_shape = tuple(input_shape or self.layers[0].input_shape)
        shape = self.input_shape
        for layer in self.layers:
            if layer.input_shape != shape:
                raise ValueError(f"layer {layer.index} ({layer.kind}) takes "
                                 f"{layer.input_shape}, the layer before gives {shape}")
            shape = layer.output_shape
        if not isinstance(self.layers[-1], Activated) or len(shape) != 1:
            raise ValueError("the output layer must be a dense layer")
        for below, layer in zip([None] + self.layers, self.layers + [None]):
            if isinstance(below, Activated):  # a relu then a max pool: the pool applies it
                below.max_pool_after = isinstance(layer, MaxPool)
            if isinstance(layer, MaxPool):
                layer.below = below if isinstance(below, Activated) else None
        self.params: list[Parameter] = [p for layer in self.layers for p in layer.params]
        # a layer's input gradient is wanted only when some layer below has parameters
        self._wants_input_grad = [any(l.params for l in self.layers[:i])
                                  for i in range(len(self.layers))]
        self._shards: Shards | None = None  # made at the first batch that is cut

    @classmethod
    def dense(cls, weights: Sequence[Array], biases: Sequence[Array],
              activations: Sequence[Activation], dropout: Sequence[float] | None = None
              ) -> Network:
        """Dense layers from their W (fan_out, fan_in) and b; `dropout`, one rate per layer
        (0 for the output layer), puts a dropout layer after each layer that has one."""
        if not (len(weights) == len(biases) == len(activations) >= 1):
            raise ValueError("need one weight matrix, bias vector and activation per layer")
        rates = list(dropout) if dropout is not None else [0.0] * len(activations)
        if len(rates) != len(activations) or rates[-1] != 0.0:
            raise ValueError("dropout needs one rate per layer, 0 for the output layer")
        layers: list[Layer] = []
        for index, (w, b, f, rate) in enumerate(zip(weights, biases, activations, rates)):
            if layers and w.ndim == 2 and w.shape[1] != layers[-1].output_shape[0]:
                raise ValueError(f"layer {index}: W has {w.shape[1]} inputs, the layer "
                                 f"before has {layers[-1].output_shape[0]} outputs")
            layers.append(Dense(index, w, b, f))
            if rate:
                layers.append(Dropout(index, layers[-1].output_shape, rate))
        return cls(layers)

    @classmethod
    def create(cls, sizes: Sequence[int], activations: Sequence[Activation],
               rng: np.random.Generator, init: str | Sequence[str] = "auto",
               dtype=np.float32, dropout: Sequence[float] | None = None) -> Network:
        """A fresh dense network; `init` is one name for all layers, a name per layer, or
        'auto'."""
        layers = len(sizes) - 1
        names = [init] * layers if isinstance(init, str) else list(init)
        weights, biases = [], []
        for index, activation in enumerate(activations):
            name = default_for(activation.name) if names[index] == "auto" else names[index]
            weights.append(init_weights(name, sizes[index], sizes[index + 1], rng, dtype))
            biases.append(np.zeros(sizes[index + 1], dtype=dtype))
        return cls.dense(weights, biases, activations, dropout)

    @property
    def weights(self) -> list[Array]:
        """The weight tensors, W of each dense and conv layer."""
        return [p.value for p in self.params if p.decays]

    @property
    def biases(self) -> list[Array]:
        return [layer.params[1].value for layer in self.layers if isinstance(layer, Dense)]

    @property
    def activations(self) -> list[Activation]:
        return _Activations([layer for layer in self.layers if isinstance(layer, Activated)])

    @property
    def dropout(self) -> list[float]:
        """The rates of the dropout layers: training draws masks when any is above 0."""
        return [layer.rate for layer in self.layers if isinstance(layer, Dropout)]

    @property
    def sizes(self) -> list[int]:
        """The flat input size and each dense layer's units (the tutorials' sizes)."""
        return [math.prod(self.input_shape)] + [
            layer.output_shape[0] for layer in self.layers if isinstance(layer, Dense)]

    @property
    def dtype(self) -> np.dtype:
        return self.params[0].value.dtype

    def parameter_count(self) -> int:
        return sum(p.value.size for p in self.params)

    def summary(self) -> list[tuple[str, Shape, int, str]]:
        """Per layer, as Keras's model.summary(): its name, output shape (per sample),
        parameter count and a few words (kernel, rate, activation)."""
        return [(f"{layer.kind} {layer.index}", layer.output_shape,
                 sum(p.value.size for p in layer.params), layer.describe())
                for layer in self.layers]

    def twin(self) -> Network:
        """A network sharing these parameters, with workspaces of its own: one per thread
        that runs inference at the same time."""
        layers = []
        for layer in self.layers:
            twin = copy.copy(layer)
            twin._workspaces = {}
            layers.append(twin)
        return Network(layers, self.input_shape)

    def replica(self, lead: bool = True) -> Network:
        """A twin whose parameters share these values but hold gradients of their own: one
        per shard of a batch (nnctl/shards.py). Only the `lead` replica moves shared state
        (batch norm's running statistics)."""
        layers = self.twin().layers
        for layer in layers:
            layer.params = [Parameter.of(p.name, p.value, p.decays) for p in layer.params]
            layer.lead = lead
        return Network(layers, self.input_shape)

    def snapshot(self) -> dict[str, Array]:
        """A copy of everything the weights file keeps (weights, batch-norm statistics)."""
        return {key: value.copy() for layer in self.layers
                for key, value in layer.arrays().items()}

    def restore(self, snapshot: dict[str, Array]) -> None:
        for layer in self.layers:
            layer.load_arrays(snapshot)

    def _as_input(self, x: Array) -> Array:
        if len(self.input_shape) != 3:
            return x
        channels, height, width = self.input_shape
        if channels == 1:
            return x.reshape(len(x), height, width, 1)
        return x.reshape(len(x), channels, height, width).transpose(0, 2, 3, 1)

    def _forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        """The forward pass; with `rng`, dropout layers drop (training). In training, batch
        normalisation uses the batch's statistics and updates its running ones."""
        a = self._as_input(x)
        for layer in self.layers:
            a = layer.forward(a, training, rng)
        return a

    def forward(self, x: Array, chunk: int = 4096) -> Array:
        """The output activations for every row of x, computed in chunks of rows."""
        x = np.asarray(x, dtype=self.dtype)
        out = np.empty((len(x), self.sizes[-1]), dtype=self.dtype)
        for start, _, output in self.forward_chunks(x, chunk):
            out[start:start + len(output)] = output
        return out

    def forward_chunks(self, x: Array, chunk: int = 4096):
        """Yield (start row, z_L, a_L) chunk by chunk; the arrays are reused between chunks.
        Chunks are smaller where a layer's workspace would pass CHUNK_BYTES (im2col); a
        network of images runs each chunk as shards on the threads, as in training."""
        x = np.asarray(x, dtype=self.dtype)
        last = self.layers[-1]
        chunk = max(1, min(chunk, CHUNK_BYTES // (self.dtype.itemsize * max(
            layer.floats_per_sample() for layer in self.layers))))
        for start in range(0, len(x), chunk):
            rows = x[start:start + chunk]
            if self._cut(len(rows)):
                yield (start, *self._sharded().forward(rows))
            else:
                self._forward(rows, False, None)
                yield start, last.z, last.a

    def _cut(self, rows: int) -> bool:
        """Whether a batch of `rows` goes through as shards: for networks of images."""
        return len(self.input_shape) == 3 and rows >= SHARDS * SMALLEST_SHARD

    def _sharded(self) -> Shards:
        if self._shards is None:
            self._shards = Shards(self)
        return self._shards

    def loss(self, x: Array, y: Array, loss: Loss,
             rng: np.random.Generator | None = None, training: bool = True) -> float:
        """The batch's mean loss, by the same route backprop takes (fused or general)."""
        self._forward(np.asarray(x, dtype=self.dtype), training, rng)
        last = self.layers[-1]
        if loss.natural_output == last.activation.name:
            return loss.fused_value(last.z, y)
        return loss.value(last.a, y)

    def backprop(self, x: Array, y: Array, loss: Loss, want_loss: bool = True,
                 rng: np.random.Generator | None = None, grad_scale: float = 1.0,
                 factored: bool = False) -> tuple[float, Array]:
        """Fill every parameter's .grad with grad_scale * dL/dparam for the batch (x, y).

        Returns the batch's mean loss (nan when not wanted) and the output activations,
        which stay valid until the next call with the same batch size. With `rng`, dropout
        is applied; without, the network is deterministic. Backprop is linear in the output
        error, so `grad_scale` (an optimizer's learning rate) scales that one small matrix
        and every gradient follows. `factored` leaves each gradient it can as its factors
        (Parameter.factors) for the optimizer, valid until the next call.

        A network of images cuts a large enough batch into shards run at once on the
        threads (nnctl/shards.py); its gradients are then formed, never factored."""
        if self._cut(len(x)):
            return self._sharded().backprop(x, y, loss, want_loss, rng, grad_scale)
        return alone(self.backprop_steps(x, y, loss, want_loss, rng, grad_scale, factored))

    def backprop_steps(self, x: Array, y: Array, loss: Loss, want_loss: bool,
                       rng: np.random.Generator | None, grad_scale: float, factored: bool
                       ) -> Steps:
        """backprop as steps: the layers that couple rows (batch norm) yield their sums
        over these rows and are sent the batch's (see layers/base.py)."""
        a = self._as_input(x)
        for layer in self.layers:
            if layer.couples_rows:
                a = yield from layer.forward_steps(a)
            else:
                a = layer.forward(a, True, rng)
        last = self.layers[-1]
        output = last.activation
        z, a, delta = last.z, last.a, last.output_delta()
        if loss.natural_output == output.name:
            value = loss.fused_value(z, y, a) if want_loss else float("nan")
            loss.fused_delta(a, y, delta, grad_scale)
        else:
            value = loss.value(a, y) if want_loss else float("nan")
            np.copyto(delta, loss.gradient(a, y))
            output.backward(z, a, delta)
            if grad_scale != 1.0:
                delta *= grad_scale
        below = last.backward_z(delta, self._wants_input_grad[-1], factored)
        for index in range(len(self.layers) - 2, -1, -1):
            layer, wanted = self.layers[index], self._wants_input_grad[index]
            if layer.couples_rows:
                below = yield from layer.backward_steps(below, wanted)
            else:
                below = layer.backward(below, wanted, factored)
        return value, a
