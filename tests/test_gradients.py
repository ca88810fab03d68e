"""Backprop against central finite differences, float64, relative error below 1e-6."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nnctl.activations import REGISTRY, get_activation
from nnctl.gradcheck import check_gradients
from nnctl.losses import LOSSES, get_loss
from nnctl.network import Network
from nnctl.trainer import targets_for

HIDDEN = sorted(set(REGISTRY) - {"softmax"})
PAIRS = [(loss, output) for loss, cls in sorted(LOSSES.items()) for output in sorted(cls.outputs)]


def build(seed, sizes, hidden, output, rng_inputs=True):
    rng = np.random.default_rng(seed)
    activations = [get_activation(hidden)] * (len(sizes) - 2) + [get_activation(output)]
    network = Network.create(sizes, activations, rng, "xavier", np.float64)
    for b in network.biases:  # zero biases behind a dead relu put z exactly on the kink
        b[:] = rng.uniform(-0.5, 0.5, b.shape)
    x = rng.uniform(-1.0, 1.0, (5, sizes[0]))
    labels = rng.integers(0, sizes[-1], 5)
    return network, x, labels


def assert_backprop_matches(network, loss_name, x, labels):
    loss = get_loss(loss_name)
    y = targets_for(loss, labels, network.sizes[-1], np.float64)
    checks = check_gradients(network, loss, x, y)
    assert len(checks) == 2 * len(network.activations)
    worst = max(checks, key=lambda c: c.relative_error)
    assert worst.relative_error < 1e-6, worst


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    hidden=st.sampled_from(HIDDEN),
    pair=st.sampled_from(PAIRS),
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    inputs=st.integers(1, 5),
    outputs=st.integers(2, 4),
)
def test_backprop_equals_finite_differences(seed, hidden, pair, widths, inputs, outputs):
    loss_name, output = pair
    network, x, labels = build(seed, [inputs, *widths, outputs], hidden, output)
    assert_backprop_matches(network, loss_name, x, labels)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_every_hidden_activation_on_three_hidden_layers(hidden):
    network, x, labels = build(3, [4, 5, 4, 3, 3], hidden, "softmax")
    assert_backprop_matches(network, "categorical_crossentropy", x, labels)


@pytest.mark.parametrize("loss_name, output", PAIRS)
def test_every_loss_with_every_output_it_is_meant_for(loss_name, output):
    network, x, labels = build(5, [3, 4, 3], "tanh", output)
    assert_backprop_matches(network, loss_name, x, labels)


def test_parameterised_activations_check_with_their_parameters():
    rng = np.random.default_rng(0)
    activations = [get_activation("leaky_relu", slope=0.2), get_activation("elu", alpha=0.5),
                   get_activation("softmax")]
    network = Network.create([3, 4, 4, 3], activations, rng, "he", np.float64)
    assert_backprop_matches(network, "sparse_categorical_crossentropy",
                            rng.uniform(-1, 1, (6, 3)), rng.integers(0, 3, 6))


def test_a_wrong_derivative_is_caught():
    network, x, labels = build(1, [3, 4, 3], "tanh", "softmax")
    wrong = get_activation("tanh")
    object.__setattr__(wrong, "backward", lambda z, a, delta: None)  # pretend f' = 1
    network.activations[0] = wrong
    loss = get_loss("categorical_crossentropy")
    checks = check_gradients(network, loss, x, targets_for(loss, labels, 3, np.float64))
    assert checks[0].relative_error > 1e-3
