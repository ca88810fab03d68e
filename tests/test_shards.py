"""A batch cut in shards run at once: the same gradients as the whole batch (float64, finite
differences too), batch norm over the whole batch, the same weights on 1, 2 and 3 threads."""

import threading

import numpy as np
import pytest

from nnctl import parallel, shards, threads
from nnctl.layers.base import alone
from nnctl.layers.batch_norm import BatchNorm
from nnctl.losses import get_loss
from nnctl.optimizers import SGD
from nnctl.trainer import fit, targets_for
from tests.test_layers import CONV, assert_gradients_check, network

LAYERS = [{**CONV, "padding": "same", "activation": "linear"},
          {"type": "batch_norm", "activation": "relu", "momentum": 0.5},
          {"type": "max_pool", "size": 2},
          {"type": "conv", "filters": 4, "kernel": 2, "activation": "elu"},
          {"type": "flatten"},
          {"units": 6, "activation": "linear"},
          {"type": "batch_norm", "activation": "tanh"}]
SHAPE = (2, 8, 8)


@pytest.fixture
def forced(monkeypatch):
    """Helpers take every shard they can, however slow that is on a busy machine."""
    monkeypatch.setattr(threads, "_cap", None)
    parallel.set_adaptive(False)
    yield
    parallel.set_adaptive(True)
    parallel.set_workers(1)


def batch(rows, seed=1, dtype=np.float64, shape=SHAPE):
    rng = np.random.default_rng(seed)
    loss = get_loss("sparse_categorical_crossentropy")
    x = rng.uniform(-1, 1, (rows, int(np.prod(shape)))).astype(dtype)
    return x, targets_for(loss, rng.integers(0, 10, rows), 10, dtype), loss


@pytest.mark.parametrize("rows,shape", [(16, SHAPE), (17, SHAPE), (40, SHAPE), (17, (1, 8, 8))])
def test_shards_give_the_whole_batchs_loss_gradients_and_statistics(rows, shape):
    x, y, loss = batch(rows, shape=shape)
    whole, cut = network(shape, LAYERS), network(shape, LAYERS)
    value, output = alone(whole.backprop_steps(x, y, loss, True, None, 0.5, True))
    expected = [p.gradient().copy() for p in whole.params]  # formed from its factors
    assert rows >= shards.SHARDS * shards.SMALLEST_SHARD
    cut_value, cut_output = cut.backprop(x, y, loss, grad_scale=0.5)
    assert cut._shards is not None, "the batch was not cut"
    assert cut_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(cut_output, output, rtol=1e-12)
    for p, grad in zip(cut.params, expected):
        np.testing.assert_allclose(p.grad, grad, rtol=1e-9, atol=1e-12, err_msg=p.name)
    norms = [(a, b) for a, b in zip(whole.layers, cut.layers) if isinstance(a, BatchNorm)]
    for a, b in norms:  # moved once, by the batch's mean and variance
        np.testing.assert_allclose(b.running_mean, a.running_mean, rtol=1e-12)
        np.testing.assert_allclose(b.running_var, a.running_var, rtol=1e-12)


def test_a_cut_batch_passes_the_finite_difference_check():
    assert_gradients_check(network(SHAPE, LAYERS), SHAPE, rows=18)


def test_a_small_batch_and_a_dense_network_are_not_cut():
    x, y, loss = batch(shards.SHARDS * shards.SMALLEST_SHARD - 1)
    net = network(SHAPE, LAYERS)
    net.backprop(x, y, loss)
    assert net._shards is None


def test_each_shard_draws_its_own_dropout_masks_from_the_training_generator():
    x, y, loss = batch(32)
    layers = [CONV, {"type": "flatten"}, {"type": "dropout", "rate": 0.5}]
    outputs = []
    for seed in (3, 3, 4):
        net = network(SHAPE, layers)
        outputs.append(net.backprop(x, y, loss, rng=np.random.default_rng(seed))[1].copy())
    assert np.array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])
    kept = [replica.layers[2].keep for replica in net._shards.replicas]
    assert not np.array_equal(kept[0], kept[1])  # the shards' masks differ


def test_a_product_run_inside_a_shard_stays_on_that_thread(forced):
    parallel.set_workers(2)
    seen = []

    def inner(index):
        seen.append((threading.current_thread().name, index))

    def outer(index):
        parallel.run(inner, 4)
        seen.append((threading.current_thread().name, "outer"))

    for _ in range(20):
        seen.clear()
        parallel.run(outer, 2)
        names = {}
        for name, what in seen:
            names.setdefault(name, []).append(what)
        assert sorted(what for whats in names.values() for what in whats
                      if what != "outer") == sorted([0, 1, 2, 3] * 2)
        assert all(whats.count("outer") * 4 == len(whats) - whats.count("outer")
                   for whats in names.values())


def test_training_gives_the_same_weights_with_1_2_and_3_threads(forced):
    rng = np.random.default_rng(2)
    x, labels = rng.random((160, int(np.prod(SHAPE))), np.float32), rng.integers(0, 10, 160)
    layers = LAYERS[:5] + [{"type": "dropout", "rate": 0.3}]
    finals = []
    for count in (1, 2, 3):
        net = network(SHAPE, layers, dtype="float32")
        fit(net, get_loss("sparse_categorical_crossentropy"),
            SGD(0.05, momentum=0.9, nesterov=True), x, labels, epochs=2, batch_size=32,
            rng=np.random.default_rng(0), threads=count)
        finals.append([a.copy() for layer in net.layers for a in layer.arrays().values()])
    for other in finals[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(finals[0], other))


def test_inference_in_shards_gives_the_whole_batchs_outputs():
    x, y, loss = batch(41)
    net = network(SHAPE, LAYERS)
    net.backprop(x, y, loss)  # running statistics away from their start
    whole = net._forward(x, False, None).copy()
    np.testing.assert_allclose(net.forward(x), whole, rtol=1e-12)
    np.testing.assert_allclose(net.forward(x, chunk=20), whole, rtol=1e-12)
    assert net._shards._forwards, "inference did not run in shards"
