import warnings

import numpy as np
import pytest

from nnctl.activations import REGISTRY, get_activation
from nnctl.losses import get_loss
from nnctl.network import Network
from nnctl.optimizers import Adam, SGD
from nnctl.trainer import fit, targets_for


def xor_net(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    net = Network.create([2, 8, 2], [get_activation("tanh"), get_activation("softmax")],
                         rng, "xavier", dtype)
    return net, rng


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0] * 8)


@pytest.mark.parametrize("optimizer", [
    SGD(0.5), SGD(0.2, momentum=0.9), SGD(0.2, momentum=0.9, nesterov=True),
    SGD(0.5, weight_decay=1e-4), Adam(0.05)], ids=["sgd", "momentum", "nesterov", "l2", "adam"])
def test_every_optimizer_learns_xor_to_100_percent(optimizer):
    net, rng = xor_net()
    loss = get_loss("sparse_categorical_crossentropy")
    reports = fit(net, loss, optimizer, XOR_X, XOR_Y, epochs=150, batch_size=8, rng=rng,
                  eval_sets={"train": (XOR_X, XOR_Y)})
    assert reports[-1].evaluations["train"].accuracy == 1.0


def train_weights(seed):
    net, rng = xor_net(seed)
    fit(net, get_loss("categorical_crossentropy"), SGD(0.3, momentum=0.5), XOR_X, XOR_Y,
        epochs=5, batch_size=3, rng=rng)
    return [p.value.copy() for p in net.params]


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not():
    first, again, other = train_weights(7), train_weights(7), train_weights(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_the_tutorial_worked_example_shapes():
    rng = np.random.default_rng(0)
    net = Network.create([4, 2, 3], [get_activation("sigmoid"), get_activation("sigmoid")], rng)
    net.backprop(rng.random((5, 4), dtype=np.float32), np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]],
                 get_loss("mse"))
    assert [p.grad.shape for p in net.params] == [(2, 4), (2,), (3, 2), (3,)]
    assert net.weights[0].shape == (2, 4) and net.weights[1].shape == (3, 2)


def test_float32_stays_float32_through_a_training_step():
    net, rng = xor_net()
    opt = Adam(0.01)
    net.backprop(XOR_X[:4], XOR_Y[:4], get_loss("sparse_categorical_crossentropy"))
    opt.step(net.params)
    assert all(p.value.dtype == np.float32 and p.grad.dtype == np.float32 for p in net.params)
    assert all(s.dtype == np.float32 for slots in opt.state.values() for s in slots)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_activations_are_stable_for_huge_inputs(name):
    z = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], dtype=np.float32)
    out = np.empty_like(z)
    delta = np.ones_like(z)
    f = get_activation(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f.forward(z, out)
        f.backward(z, out, delta)
    assert np.isfinite(out).all() and np.isfinite(delta).all()


def test_fused_softmax_cross_entropy_equals_the_general_chain_rule():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(6, 4))
    a = np.empty_like(z)
    softmax = get_activation("softmax")
    softmax.forward(z, a)
    loss = get_loss("categorical_crossentropy")
    y = targets_for(loss, rng.integers(0, 4, 6), 4, np.float64)
    fused = np.empty_like(z)
    loss.fused_delta(a, y, fused)
    general = loss.gradient(a, y)
    softmax.backward(z, a, general)
    assert np.allclose(fused, general)
    assert np.isclose(loss.fused_value(z, y), loss.value(a, y))


def test_loss_values_follow_the_documented_formulas():
    a = np.array([[0.5, 0.25, 0.25]])
    y = np.array([[1.0, 0.0, 0.0]])
    assert np.isclose(get_loss("mse").value(a, y), 0.5 * (0.25 + 0.0625 + 0.0625))
    assert np.isclose(get_loss("categorical_crossentropy").value(a, y), np.log(2))
    assert np.isclose(get_loss("sparse_categorical_crossentropy").value(a, np.array([0])), np.log(2))
    expected = -(np.log(0.5) + np.log(0.75) + np.log(0.75))
    assert np.isclose(get_loss("binary_crossentropy").value(a, y), expected)
