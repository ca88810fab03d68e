"""Data parallelism within one batch: the batch cut into shards that go through replicas of
the network at once, one shard per core, and their gradients summed.

A convolutional network spends about half its time outside the matrix products: im2col,
col2im, pooling, activations, NumPy calls that each use one core. Cutting each product into
blocks (blas.py) puts both cores on the products only. Cutting the batch puts them on
everything: shard k's rows go forward and backward through replica k (the same parameter
values, its own workspaces and gradients), and the products inside a shard run where the
shard runs (parallel.run nested in a block stays on its thread).

In training on Linux, the shards after the first run in worker processes forked for the
purpose (nnctl/shardworker.py): two threads of one interpreter take turns at its lock around
every NumPy call, which made LeNet-5's shards 40% slower side by side. Elsewhere, in
inference, and once a worker has been lost, they run on nnctl's threads (nnctl/parallel.py).
In both cases, calls are timed and run all on the calling thread while that has lately been
faster (a busy machine).

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

import time
from typing import TYPE_CHECKING

import numpy as np

from nnctl import parallel, shardworker
from nnctl.shardworker import ShardWorker, WorkerLost

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
        self._shard_workers: list[ShardWorker | None] | None = None
        self._lost = False  # a worker failed: the shards stay in this process from now on

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
        seeds = ([None] * count if rng is None
                 else [int(s) for s in rng.integers(2**63, size=count)])
        shards = [_Shard(replica, x[a:b], y[a:b], loss, want_loss, seed,
                         grad_scale * (b - a) / rows)
                  for replica, seed, a, b in zip(self.replicas, seeds, edges, edges[1:])]
        workers = self._workers(shards)
        if workers is None:
            results = self._run_on_threads(shards, rows)
        else:  # shared with the workers, or all here while that has lately been faster
            chooser = parallel.chooser(("shard processes", rows))
            started = time.perf_counter()
            if chooser is None or chooser.shared_now():
                results = self._run_with_workers(shards, workers)
            else:
                with parallel.on_this_thread():
                    results = self._run_on_threads(shards, rows)
            if chooser is not None:
                chooser.record(time.perf_counter() - started)
        grads = [shard.grads for shard in shards]
        for j, p in enumerate(self.network.params):
            p.factors = None
            np.copyto(p.grad, grads[0][j])
            for other in grads[1:]:
                p.grad += other[j]
        out = self._outputs.get(rows)
        if out is None:
            out = self._outputs[rows] = np.empty((rows, self.network.sizes[-1]),
                                                 self.network.dtype)
        for (_, output), a, b in zip(results, edges, edges[1:]):
            out[a:b] = output
        value = sum(v * (b - a) for (v, _), a, b in zip(results, edges, edges[1:])) / rows
        return value, out

    def _run_on_threads(self, shards: list[_Shard], rows: int) -> list[tuple]:
        """Every shard here, on the helper threads or this one, in step."""
        count = len(shards)
        sent: list[tuple | None] = [None] * count
        results: list[tuple[bool, object]] = [(False, None)] * count

        def advance(k: int) -> None:
            results[k] = shards[k].step(sent[k])

        stage = 0
        while True:
            parallel.run(advance, count, key=("shards", rows, stage))
            if _finished(results):
                return [value for _, value in results]
            sent = [_added([part for _, part in results])] * count
            stage += 1

    def _run_with_workers(self, shards: list[_Shard], workers: list[ShardWorker | None]
                          ) -> list[tuple]:
        """Shard 0 here and the others in the workers, in step. A worker lost on the way
        leaves its shard to this process, run again from its start (`_Shard.replay`)."""
        count = len(shards)
        sent: list[tuple] = []
        results: list[tuple[bool, object]] = [(False, None)] * count
        try:
            for shard, worker in zip(shards, workers):
                if worker is not None:
                    shard.hand_to(worker)
            while True:
                with parallel.on_this_thread():
                    for k, shard in enumerate(shards):
                        if shard.worker is None:
                            results[k] = shard.step(sent[-1] if sent else None)
                for k, shard in enumerate(shards):
                    if shard.worker is not None:
                        results[k] = self._received(shard, sent)
                if _finished(results):
                    return [value for _, value in results]
                sent.append(_added([part for _, part in results]))
                for shard in shards:
                    if shard.worker is not None:
                        shard.post(sent[-1])
        except BaseException:  # a worker may be in the middle of a pass: out of step now
            self.stop_workers()
            raise

    def _received(self, shard: _Shard, sent: list[tuple]) -> tuple[bool, object]:
        try:
            return shard.receive()
        except WorkerLost:
            self._lost = True
            self.stop_workers()
            return shard.replay(sent)

    def _workers(self, shards: list[_Shard]) -> list[ShardWorker | None] | None:
        """A worker process for each shard after the first, forked at the first batch that
        can use them (again when a batch does not fit their buffers); None where the shards
        run in this process: with fewer threads than shards, off Linux, or once a worker
        has been lost."""
        if self._lost or not shardworker.available() or parallel.workers() < len(shards):
            return None
        workers = self._shard_workers
        if workers is None or not all(w.fits(s.x, s.y)
                                      for w, s in zip(workers[1:], shards[1:])):
            self.stop_workers()
            try:
                workers = [None] + [ShardWorker(self.network, len(s.x), s.x, s.y)
                                    for s in shards[1:]]
            except OSError:  # no fork today (process or memory limits): threads it is
                self._lost = True
                return None
            self._shard_workers = workers
        return workers

    def stop_workers(self) -> None:
        """End the worker processes, if any (a later batch forks new ones)."""
        for worker in self._shard_workers or []:
            if worker is not None:
                worker.stop()
        self._shard_workers = None


def _finished(results: list[tuple[bool, object]]) -> bool:
    finished = [done for done, _ in results]
    if all(finished):
        return True
    if any(finished):  # the replicas are one network: they stop at the same sums
        raise RuntimeError("the shards of a batch fell out of step")
    return False


class _Shard:
    """One shard's pass through a batch: as steps of its replica here, or in a worker."""

    def __init__(self, replica: Network, x: Array, y: Array, loss: Loss, want_loss: bool,
                 seed: int | None, grad_scale: float):
        self.replica, self.x, self.y, self.loss = replica, x, y, loss
        self.want_loss, self.seed, self.grad_scale = want_loss, seed, grad_scale
        self.steps = None
        self.worker: ShardWorker | None = None

    @property
    def grads(self) -> list[Array]:
        """Where the pass left its gradients, one per parameter."""
        if self.worker is not None:
            return self.worker.grads
        return [p.grad for p in self.replica.params]

    def step(self, sums: tuple | None) -> tuple[bool, object]:
        """The pass here, to its next step: (False, the sums it yields) or (True, (loss,
        output rows)) when it ends; `sums` are the batch's for the step it waits at."""
        if self.steps is None:
            generator = None if self.seed is None else np.random.default_rng(self.seed)
            self.steps = self.replica.backprop_steps(self.x, self.y, self.loss, self.want_loss,
                                                     generator, self.grad_scale, factored=False)
        try:
            return False, self.steps.send(sums)
        except StopIteration as finished:
            return True, finished.value

    def hand_to(self, worker: ShardWorker) -> None:
        self.worker = worker
        try:
            worker.start(self.x, self.y, self.loss, self.want_loss, self.seed, self.grad_scale)
        except WorkerLost:
            pass  # receive finds the worker gone: the shards stay here from then on

    def post(self, sums: tuple) -> None:
        try:
            self.worker.send(sums)
        except WorkerLost:
            pass  # receive finds the worker gone and replays

    def receive(self) -> tuple[bool, object]:
        return self.worker.receive()

    def replay(self, sent: list[tuple]) -> tuple[bool, object]:
        """The pass run here from its start to where the lost worker was: the same seed,
        the same sums sent, so the same result."""
        self.worker, self.steps = None, None
        result = self.step(None)
        for sums in sent:
            result = self.step(sums)
        return result
