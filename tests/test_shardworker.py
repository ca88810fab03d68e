"""Shards run in a forked worker process: the same weights as in this process, a worker
lost or failing in the middle of a batch replayed here, no child left behind."""

import gc
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nnctl import parallel, shardworker
from nnctl.layers.flatten import Flatten
from nnctl.losses import get_loss
from nnctl.optimizers import SGD
from nnctl.shardworker import ShardWorker
from nnctl.trainer import fit
from tests.test_layers import network
from tests.test_shards import LAYERS, SHAPE, batch, forced  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(not shardworker.available(),
                                reason="shards run in worker processes on Linux only")
TRAINING_LAYERS = LAYERS[:5] + [{"type": "dropout", "rate": 0.3}]


def train(count, epochs=2):
    """A network with batch norm (steps) and dropout, trained on `count` threads; returns
    it and its final arrays."""
    rng = np.random.default_rng(2)
    x, labels = rng.random((160, int(np.prod(SHAPE))), np.float32), rng.integers(0, 10, 160)
    net = network(SHAPE, TRAINING_LAYERS, dtype="float32")
    fit(net, get_loss("sparse_categorical_crossentropy"), SGD(0.05, momentum=0.9), x, labels,
        epochs=epochs, batch_size=32, rng=np.random.default_rng(0), threads=count)
    return net, [a.copy() for layer in net.layers for a in layer.arrays().values()]


def assert_same(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)


def ended(pid: int) -> bool:
    """Whether the process is gone or dead (a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_worker_process_trains_to_the_same_weights_as_one_thread(forced, monkeypatch):
    _, alone = train(1)
    net, with_worker = train(2)
    workers = net._shards._shard_workers
    assert workers is not None and workers[0] is None and not ended(workers[1].pid)
    assert_same(alone, with_worker)
    monkeypatch.setattr(shardworker, "available", lambda: False)
    net, on_threads = train(2)
    assert net._shards._shard_workers is None
    assert_same(alone, on_threads)


def test_shards_run_here_when_the_timing_says_so_give_the_same_weights(forced, monkeypatch):
    class Solo:
        def shared_now(self):
            return False

        def record(self, seconds):
            pass

    _, alone = train(1)
    monkeypatch.setattr(parallel, "chooser", lambda key: Solo())
    monkeypatch.setattr(ShardWorker, "start", lambda *args: pytest.fail("the worker was used"))
    _, solo = train(2)
    assert_same(alone, solo)


@pytest.mark.parametrize("at", [1, 3, 10])
def test_a_worker_killed_in_the_middle_of_a_batch_is_replayed_here(forced, monkeypatch, at):
    _, alone = train(1)
    receive, calls, killed = ShardWorker.receive, [], []

    def killing(worker):
        calls.append(1)
        if len(calls) == at:
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)
        return receive(worker)

    monkeypatch.setattr(ShardWorker, "receive", killing)
    net, replayed = train(2)
    assert killed and net._shards._lost and net._shards._shard_workers is None
    assert ended(killed[0])
    assert_same(alone, replayed)


def test_a_worker_gone_before_its_shard_is_handed_over_is_run_here(forced, monkeypatch):
    _, alone = train(1)
    start, killed = ShardWorker.start, []

    def killed_first(worker, *args):
        if not killed:
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)
        start(worker, *args)

    monkeypatch.setattr(ShardWorker, "start", killed_first)
    net, replayed = train(2)
    assert killed and net._shards._lost and net._shards._shard_workers is None
    assert_same(alone, replayed)


def test_a_pass_failing_in_the_worker_is_run_again_here(forced, monkeypatch):
    _, alone = train(1)
    caller, forward = os.getpid(), Flatten.forward

    def failing_in_the_child(self, x, training, rng):
        if os.getpid() != caller:
            raise FloatingPointError("only in the worker")
        return forward(self, x, training, rng)

    monkeypatch.setattr(Flatten, "forward", failing_in_the_child)
    net, replayed = train(2)
    assert net._shards._lost
    assert_same(alone, replayed)


def test_an_interrupted_batch_ends_the_workers_and_the_next_fit_forks_new_ones(forced, monkeypatch):
    x, y, loss = batch(32, dtype=np.float32)
    net = network(SHAPE, TRAINING_LAYERS, dtype="float32")
    parallel.set_workers(2)
    net.backprop(x, y, loss)
    first = net._shards._shard_workers[1].pid
    forward = Flatten.forward

    def interrupted(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(Flatten, "forward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        net.backprop(x, y, loss)
    assert net._shards._shard_workers is None and ended(first)
    monkeypatch.setattr(Flatten, "forward", forward)
    expected = network(SHAPE, TRAINING_LAYERS, dtype="float32")
    expected.restore(net.snapshot())
    parallel.set_workers(1)
    expected.backprop(x, y, loss)
    parallel.set_workers(2)
    net.backprop(x, y, loss)
    assert net._shards._shard_workers[1].pid != first
    for p, q in zip(net.params, expected.params):
        assert np.array_equal(p.grad, q.grad), p.name


def test_a_network_let_go_ends_its_worker(forced):
    x, y, loss = batch(32, dtype=np.float32)
    net = network(SHAPE, TRAINING_LAYERS, dtype="float32")
    parallel.set_workers(2)
    net.backprop(x, y, loss)
    pid = net._shards._shard_workers[1].pid
    del net
    gc.collect()
    assert ended(pid)


CHILD = """
import os, signal, sys
import numpy as np
from nnctl import parallel
from tests.test_layers import network
from tests.test_shards import LAYERS, SHAPE, batch, forced  # noqa: F401 - a fixture
x, y, loss = batch(32, dtype=np.float32)
net = network(SHAPE, LAYERS, dtype="float32")
parallel.set_adaptive(False)
parallel.set_workers(2)
net.backprop(x, y, loss)
print(net._shards._shard_workers[1].pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_worker_ends_when_the_training_process_is_killed():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", CHILD], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr
    pid = int(run.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not ended(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended(pid)


def test_a_larger_batch_forks_a_worker_with_room_for_it(forced):
    net = network(SHAPE, TRAINING_LAYERS, dtype="float32")
    parallel.set_workers(2)
    x, y, loss = batch(32, dtype=np.float32)
    net.backprop(x, y, loss)
    first = net._shards._shard_workers[1]
    net.backprop(x[:20], y[:20], loss)  # a smaller last batch fits
    assert net._shards._shard_workers[1] is first
    x, y, loss = batch(48, seed=2, dtype=np.float32)
    net.backprop(x, y, loss)
    assert net._shards._shard_workers[1].rows == 24 and ended(first.pid)
    grads = [p.grad.copy() for p in net.params]
    parallel.set_workers(1)
    net.backprop(x, y, loss)
    for p, grad in zip(net.params, grads):
        assert np.array_equal(p.grad, grad), p.name
