"""Data parallelism within one batch: the batch cut into shards that go through replicas of
the network at once, one shard per thread, and their gradients summed.

A convolutional network spends about half its time outside the matrix products: im2col,
col2im, pooling, activations, NumPy calls that each use one core. Cutting each product into
blocks (blas.py) puts both cores on the products only. Cutting the batch puts them on
everything: shard k's rows go forward and backward through replica k (the same parameter
values, its own workspaces and gradients) on whichever thread takes it, and the products
inside a shard run on that thread (parallel.run nested in a block stays on its thread).

The batch's loss is the mean over its rows, so its gradient is the sum of the shards'
gradients when each shard's output error is scaled by its share of the rows. The shards
are cut from the batch size alone and summed in shard order: the weights come out the same
with 1, 2 or more threads.

Batch normalisation couples the rows of a batch (its mean and variance), so its training
passes are steps (layers/batch_norm.py) that stop at each sum over the batch: every shard
runs to that point, the driver adds their partial sums and sends the totals back, and all
go on. Dropout in shard k draws from a generator of its own, seeded from the training
generator at every batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nnctl import parallel

if TYPE_CHECKING:
    from nnctl.losses import Loss
    from nnctl.network import Network

Array = np.ndarray
SHARDS = 2  # shards per batch: the cores of the machine this is tuned on
SMALLEST_SHARD = 8  # rows; a batch with fewer than SHARDS times this is not cut


def cuts(rows: int, count: int) -> list[int]:
    """The edges of `count` shards of `rows` rows, as even as can be."""
    return [rows * k // count for k in range(count + 1)]


def _added(parts: list[tuple]) -> tuple:
    """The element-wise sum of the shards' partial sums, added in shard order."""
    total = list(parts[0])
    for part in parts[1:]:
        total = [t + p for t, p in zip(total, part)]
    return tuple(total)


class Shards:
    """`count` replicas of a network, to run the shards of one batch."""

    def __init__(self, network: Network, count: int = SHARDS):
        self.network = network
        self.replicas = [network.replica(lead=k == 0) for k in range(count)]
        self._outputs: dict[int, Array] = {}
        self._forwards: dict[int, tuple[Array, Array]] = {}

    def forward(self, x: Array) -> tuple[Array, Array]:
        """Inference over the rows of x as shards: the output layer's z and a, arrays
        reused by the next call with as many rows."""
        rows, count = len(x), len(self.replicas)
        edges = cuts(rows, count)
        if rows not in self._forwards:
            shape = (rows, self.network.sizes[-1])
            self._forwards = {rows: (np.empty(shape, self.network.dtype),
                                     np.empty(shape, self.network.dtype))}
        z, a = self._forwards[rows]

        def run(k: int) -> None:
            replica, start, stop = self.replicas[k], edges[k], edges[k + 1]
            replica._forward(x[start:stop], False, None)
            z[start:stop], a[start:stop] = replica.layers[-1].z, replica.layers[-1].a

        parallel.run(run, count, key=("shards", rows, "forward"))
        return z, a

    def backprop(self, x: Array, y: Array, loss: Loss, want_loss: bool,
                 rng: np.random.Generator | None, grad_scale: float) -> tuple[float, Array]:
        """Network.backprop for the batch (x, y): every parameter's .grad filled, the mean
        loss and the output activations returned."""
        rows, count = len(x), len(self.replicas)
        edges = cuts(rows, count)
        if rng is None:
            generators = [None] * count
        else:
            generators = [np.random.default_rng(seed) for seed in rng.integers(2**63, size=count)]
        passes = [replica.backprop_steps(x[a:b], y[a:b], loss, want_loss, generator,
                                         grad_scale * (b - a) / rows, factored=False)
                  for replica, generator, a, b in zip(self.replicas, generators, edges, edges[1:])]
        sent: list[tuple | None] = [None] * count
        results: list[tuple[bool, object]] = [(False, None)] * count

        def advance(k: int) -> None:
            try:
                results[k] = (False, passes[k].send(sent[k]))
            except StopIteration as finished:
                results[k] = (True, finished.value)

        stage = 0
        while True:
            parallel.run(advance, count, key=("shards", rows, stage))
            finished = [done for done, _ in results]
            if all(finished):
                break
            if any(finished):  # the replicas are one network: they stop at the same sums
                raise RuntimeError("the shards of a batch fell out of step")
            sent = [_added([part for _, part in results])] * count
            stage += 1
        for j, p in enumerate(self.network.params):
            p.factors = None
            parts = [replica.params[j].grad for replica in self.replicas]
            np.copyto(p.grad, parts[0])
            for part in parts[1:]:
                p.grad += part
        values = [value for _, (value, _) in results]
        out = self._outputs.get(rows)
        if out is None:
            out = self._outputs[rows] = np.empty((rows, self.network.sizes[-1]),
                                                 self.network.dtype)
        for (_, (_, output)), a, b in zip(results, edges, edges[1:]):
            out[a:b] = output
        value = sum(v * (b - a) for v, a, b in zip(values, edges, edges[1:])) / rows
        return value, out
