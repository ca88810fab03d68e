"""Optimizer steps against their textbook formulas, and the fast routes against the plain one:
gradients scaled by the learning rate, gradients left as factors, the BLAS updates."""

import numpy as np
import pytest

from nnctl.activations import get_activation
from nnctl.losses import get_loss
from nnctl.network import Network
from nnctl.optimizers import SGD, Adam
from nnctl.trainer import evaluate, fit


def step_twice(optimizer, factored, grad_scale):
    """Two steps on a 784-100-10 network (weights big enough for the GEMM route)."""
    rng = np.random.default_rng(3)
    net = Network.create([784, 100, 10], [get_activation("relu"), get_activation("softmax")],
                         rng, dtype=np.float64)
    x, y = rng.random((32, 784)), rng.integers(0, 10, 32)
    loss = get_loss("sparse_categorical_crossentropy")
    for _ in range(2):
        net.backprop(x, y, loss, grad_scale=grad_scale, factored=factored)
        optimizer.step(net.params, grad_scale)
    return [p.value for p in net.params]


OPTIMIZERS = {
    "sgd": lambda: SGD(0.1), "momentum": lambda: SGD(0.1, momentum=0.9),
    "nesterov": lambda: SGD(0.1, momentum=0.9, nesterov=True),
    "decay": lambda: SGD(0.1, weight_decay=0.01),
    "momentum+decay": lambda: SGD(0.1, momentum=0.9, weight_decay=0.01),
    "nesterov+decay": lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: Adam(0.01),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_factored_and_lr_scaled_gradients_give_the_plain_step(route, name):
    plain = step_twice(OPTIMIZERS[name](), factored=False, grad_scale=1.0)
    for factored, scale in ((True, 1.0), (False, 0.1), (True, 0.1), (True, 3.0)):
        fast = step_twice(OPTIMIZERS[name](), factored, scale)
        assert all(np.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(plain, fast))


def test_sgd_steps_follow_nielsens_formulas():
    """v <- mu v - lr (g + wd W); W <- W + v (Nielsen, chapter 3), with a given gradient;
    Nesterov: W <- W + mu v - lr (g + wd W) after the velocity update (Sutskever 2013)."""
    from nnctl.parameter import Parameter

    rng = np.random.default_rng(4)
    w0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(3)]
    lr, mu, wd = 0.1, 0.9, 0.01
    for nesterov in (False, True):
        p = Parameter.of("W", w0.copy(), True)
        optimizer = SGD(lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
        w, v = w0.copy(), np.zeros_like(w0)
        for g in grads:
            p.grad[...] = g
            optimizer.step([p])
            v = mu * v - lr * (g + wd * w)
            w = w + (mu * v - lr * (g + wd * w) if nesterov else v)
        assert np.allclose(p.value, w)


def test_zero_learning_rate_leaves_the_weights_and_its_running_metrics_match_evaluate():
    rng = np.random.default_rng(5)
    net = Network.create([20, 16, 3], [get_activation("tanh"), get_activation("softmax")], rng)
    x, labels = rng.random((100, 20), np.float32), rng.integers(0, 3, 100)
    before = [p.value.copy() for p in net.params]
    loss = get_loss("sparse_categorical_crossentropy")
    report = fit(net, loss, SGD(0.0, momentum=0.5), x, labels, epochs=1, batch_size=7,
                 rng=rng)[0]
    assert all(np.array_equal(a, p.value) for a, p in zip(before, net.params))
    reference = evaluate(net, loss, x, labels)
    assert report.train_accuracy == reference.accuracy
    assert report.train_loss == pytest.approx(reference.loss, rel=1e-5)


def test_sparse_cross_entropy_read_off_the_softmax_equals_log_sum_exp():
    rng = np.random.default_rng(6)
    softmax, loss = get_activation("softmax"), get_loss("sparse_categorical_crossentropy")
    z = (rng.normal(size=(50, 10)) * 5).astype(np.float32)
    z[0] = [0, -300, 0, 0, 0, 0, 0, 0, 0, 0]  # label 1's probability underflows float32
    y = rng.integers(0, 10, 50)
    y[0] = 1
    a = np.empty_like(z)
    softmax.forward(z, a)
    exact = loss.fused_value(z.astype(np.float64), y)
    assert loss.fused_value(z, y, a) == pytest.approx(exact, rel=1e-5)
    assert loss.fused_value(z[1:], y[1:], a[1:]) == pytest.approx(
        loss.fused_value(z[1:].astype(np.float64), y[1:]), rel=1e-5)
