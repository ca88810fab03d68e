"""Conv, pooling, flatten, dropout and batch-norm layers: each against its definition, and
every gradient against float64 finite differences, on tiny networks."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nnctl.config import validate
from nnctl.experiment import build_network
from nnctl.gradcheck import check_gradients
from nnctl.layers import conv as conv_module, pool as pool_module
from nnctl.layers.im2col import col2im, im2col, offset_columns
from nnctl.losses import get_loss
from nnctl.trainer import targets_for


def network(input_shape, layers, seed=0, dtype="float64"):
    raw = {"model": {"input": list(input_shape), "layers": layers + [
        {"units": 10, "activation": "softmax"}]}, "training": {"dtype": dtype}}
    return build_network(_validate_any_input(raw), np.random.default_rng(seed))


def _validate_any_input(raw):
    """validate() holds model.input to MNIST's [1, 28, 28]; small nets keep other inputs."""
    real = raw["model"]["input"]
    config = validate({**raw, "model": {**raw["model"], "input": [1, 28, 28]}})
    config.model.input = real
    return config


def assert_gradients_check(net, input_shape, loss_name="sparse_categorical_crossentropy",
                           rows=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (rows, int(np.prod(input_shape))))
    loss = get_loss(loss_name)
    y = targets_for(loss, rng.integers(0, 10, rows), 10, np.float64)
    for check in check_gradients(net, loss, x, y, max_entries=25, rng=rng):
        assert check.relative_error < 1e-6, check


CONV = {"type": "conv", "filters": 3, "kernel": 3, "activation": "tanh"}


@pytest.mark.parametrize("conv", [
    {},
    {"padding": "same"},
    {"padding": 1, "stride": 2},
    {"kernel": [2, 3], "stride": [1, 2], "padding": [1, 0]},
    {"padding": "same", "stride": 2, "activation": "leaky_relu", "slope": 0.1},
])
@pytest.mark.parametrize("channels", [1, 2])  # one channel: the columns kept by offset
@pytest.mark.parametrize("by_rows", [True, False])  # the second layer's dL/dx
def test_conv_gradients_for_each_stride_and_padding(conv, channels, by_rows, monkeypatch):
    monkeypatch.setattr(conv_module, "ROWS_UP_TO", 16 if by_rows else 0)
    shape = (channels, 7, 6)
    net = network(shape, [{**CONV, **conv}, {"type": "conv", "filters": 2, "kernel": 2,
                                             "padding": "same", "activation": "elu"}])
    assert net.layers[1]._by_rows == by_rows
    assert_gradients_check(net, shape)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from(["valid", "same", 1]),
       st.integers(1, 5), st.integers(0, 2 ** 31))
def test_the_input_gradient_by_rows_is_col2ims_to_the_bit(kh, kw, padding, channels, seed):
    """dL/dx formed by rows of a wide grid adds the same products in the same order as the
    product with W followed by col2im."""
    rng = np.random.default_rng(seed)
    shape = (channels, 7, 6)
    raw = {"type": "conv", "filters": 3, "kernel": [kh, kw], "padding": padding,
           "activation": "relu"}
    conv = network(shape, [raw, {"type": "flatten"}], dtype="float32").layers[0]
    assert conv._by_rows
    x = rng.standard_normal((5, 7, 6, channels)).astype(np.float32)
    conv.forward(x, True, None)
    dz = rng.standard_normal(conv.z.shape).astype(np.float32)
    by_rows = conv.backward_z(dz, True, False).copy()
    conv._by_rows = False
    by_col2im = conv.backward_z(dz, True, False)
    assert np.array_equal(by_rows, by_col2im)


@pytest.mark.parametrize("pool", [
    {"type": "max_pool", "size": 2},
    {"type": "max_pool", "size": 2, "stride": 1},
    {"type": "max_pool", "size": [3, 2], "stride": [2, 3], "crop": True},
    {"type": "avg_pool", "size": 2},
    {"type": "avg_pool", "size": 3, "stride": 2, "crop": True},
])
@pytest.mark.parametrize("staged", [True, False])
def test_pool_gradients(pool, staged, monkeypatch):
    monkeypatch.setattr(pool_module, "STAGED_BELOW", 1000 if staged else 0)
    shape = (2, 8, 8)
    conv = {**CONV, "padding": "same"}
    net = network(shape, [conv, pool, {"type": "flatten"}, {"units": 5, "activation": "sigmoid"}])
    assert_gradients_check(net, shape)


@pytest.mark.parametrize("after", ["conv", "dense"])
def test_batch_norm_gradients_after_conv_and_dense(after):
    shape = (1, 6, 6)
    layers = [{**CONV, "activation": "linear"}, {"type": "batch_norm", "activation": "relu"}]
    if after == "dense":
        layers = [{"units": 6, "activation": "linear"},
                  {"type": "batch_norm", "activation": "tanh", "momentum": 0.5}]
    net = network(shape, layers)
    assert_gradients_check(net, shape, rows=5)


def test_dropout_layer_gradients_for_a_fixed_mask_and_identity_at_inference():
    shape = (1, 5, 5)
    net = network(shape, [CONV, {"type": "dropout", "rate": 0.4}, {"type": "flatten"}])
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1, 1, (4, 25)), rng.integers(0, 10, 4)
    loss = get_loss("sparse_categorical_crossentropy")
    net.backprop(x, y, loss, rng=np.random.default_rng(9))
    w = net.params[0]
    analytic, numeric = w.grad.copy(), np.zeros_like(w.grad)
    flat = w.value.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        values = []
        for step in (1e-6, -1e-6):
            flat[i] = original + step
            values.append(net.loss(x, y, loss, rng=np.random.default_rng(9)))
        flat[i] = original
        numeric.reshape(-1)[i] = (values[0] - values[1]) / 2e-6
    assert np.linalg.norm(analytic - numeric) / np.linalg.norm(analytic + numeric) < 1e-6
    assert np.array_equal(net.forward(x), net.forward(x))


def direct_convolution(x, kernels, bias, stride, pads):
    """The definition, one output at a time: x (N, C, H, W), kernels (F, C, kh, kw)."""
    x = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    f, _, kh, kw = kernels.shape
    oh = (x.shape[2] - kh) // stride[0] + 1
    ow = (x.shape[3] - kw) // stride[1] + 1
    out = np.empty((len(x), f, oh, ow))
    for p in range(oh):
        for q in range(ow):
            window = x[:, :, p * stride[0]:p * stride[0] + kh, q * stride[1]:q * stride[1] + kw]
            out[:, :, p, q] = np.einsum("nchw,fchw->nf", window, kernels) + bias
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_conv_output_is_the_definition_with_the_files_kernel_layout(channels):
    shape = (channels, 7, 8)
    net = network(shape, [{**CONV, "activation": "linear", "filters": 4, "kernel": [3, 2],
                           "stride": [2, 1], "padding": "same"}, {"type": "flatten"}])
    conv = net.layers[0]
    arrays = conv.arrays()
    kernels, bias = arrays["W0"].copy(), arrays["b0"]
    assert kernels.shape == (4, channels, 3, 2)  # (filters, channels, kh, kw)
    x = np.random.default_rng(0).uniform(-1, 1, (2,) + shape)
    net.layers[1].forward(conv.forward(net._as_input(x.reshape(2, -1)), False, None), False, None)
    expected = direct_convolution(x, kernels, bias, (2, 1), conv.pads)
    assert conv.output_shape == expected.shape[1:] == (4, 4, 8)
    assert np.allclose(net.layers[1]._ws["out"], expected)
    conv.load_arrays({"W0": kernels * 2, "b0": bias})  # the file layout goes back in
    assert np.allclose(conv.arrays()["W0"], kernels * 2)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2),
       st.integers(0, 2 ** 31))
def test_col2im_is_the_adjoint_of_im2col(kh, kw, sh, sw, seed):
    """<im2col(x), y> = <x, col2im(y)> for every x and y: col2im sends each column entry
    back to the pixel it was copied from, overlaps adding up."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, 5, 3))
    oh, ow = (6 - kh) // sh + 1, (5 - kw) // sw + 1
    cols = np.empty((2, oh, ow, kh, kw, 3))
    im2col(x, (kh, kw), (sh, sw), cols)
    blocks = np.empty((kh, kw, 2, oh, ow))  # one channel's columns, kept by offset
    offset_columns(x[..., :1], (kh, kw), (sh, sw), blocks)
    assert np.array_equal(cols[..., 0].reshape(-1, kh * kw),
                          blocks.reshape(kh * kw, -1).T)  # routes agree
    y = rng.standard_normal(cols.shape)
    back = np.empty_like(x)
    col2im(y, (sh, sw), back)
    assert np.isclose(np.sum(cols * y), np.sum(x * back))
    staged_back = np.empty_like(x)
    col2im(y, (sh, sw), staged_back, np.empty((2, oh, kh, kw, ow, 3)))
    assert np.array_equal(staged_back, back)  # both routes add in the same order


def test_max_pool_keeps_the_largest_and_sends_the_gradient_to_it_alone():
    net = network((1, 4, 4), [{"type": "max_pool", "size": 2}, {"type": "flatten"}])
    pool = net.layers[0]
    x = np.zeros((1, 4, 4, 1))
    x[0, 1, 0, 0], x[0, 3, 3, 0] = 5.0, 2.0  # top-left window: 5 at (1, 0); the rest ties at 0
    out = pool.forward(x, True, None)
    assert out[0, :, :, 0].tolist() == [[5.0, 0.0], [0.0, 2.0]]
    dx = pool.backward(np.ones((1, 2, 2, 1)), True, False)[0, :, :, 0]
    assert dx.sum() == 4 and dx[1, 0] == dx[3, 3] == dx[0, 2] == dx[2, 0] == 1


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from([2, pool_module.STAGED_BELOW]), st.integers(0, 2 ** 31))
def test_max_pool_is_its_definition_with_ties_to_the_first_maximum_met(ph, pw, sh, sw,
                                                                      channels, seed):
    """Against one window at a time, on values drawn from {0, 1, 2} so that most windows tie,
    in two stages (few channels) and by window offsets (many): each output is its window's
    maximum, and its gradient goes to the first maximum the route meets, the leftmost
    column's topmost in two stages, the topmost row's leftmost by offsets; overlapping
    windows add up."""
    rng = np.random.default_rng(seed)
    pool = network((channels, 7, 6), [{"type": "max_pool", "size": [ph, pw],
                                       "stride": [sh, sw], "crop": True},
                                      {"type": "flatten"}]).layers[0]
    assert pool._staged == (channels < pool_module.STAGED_BELOW)
    x = rng.integers(0, 3, (3, 7, 6, channels)).astype(np.float64)
    out = pool.forward(x, True, None).copy()
    delta = rng.uniform(0.5, 1.5, out.shape)
    dx = pool.backward(delta, True, False)
    expected = np.zeros_like(x)
    for p in range(out.shape[1]):
        for q in range(out.shape[2]):
            window = x[:, p * sh:p * sh + ph, q * sw:q * sw + pw]
            assert np.array_equal(out[:, p, q], window.max(axis=(1, 2)))
            for n in range(len(x)):
                for c in range(x.shape[3]):
                    if pool._staged:  # column by column: leftmost, then topmost
                        j, i = divmod(int(window[n, :, :, c].T.argmax()), ph)
                    else:  # row by row: topmost, then leftmost
                        i, j = divmod(int(window[n, :, :, c].argmax()), pw)
                    expected[n, p * sh + i, q * sw + j, c] += delta[n, p, q, c]
    assert np.allclose(dx, expected)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([2, pool_module.STAGED_BELOW]),
       st.sampled_from([{"size": 2, "crop": True}, {"size": 3, "stride": 2, "crop": True},
                        {"size": 2, "stride": 1}]),
       st.booleans(), st.integers(0, 2 ** 31))
def test_a_relu_left_to_the_max_pool_gives_the_same_bits(filters, pool, norm, seed):
    """Applied by the pool to its outputs, a relu gives the outputs and every gradient of
    the relu applied before the pool, to the bit: on small whole numbers, so that windows
    tie and many hold no positive value, with batch norm in between or not."""
    layers = [{"type": "conv", "filters": filters, "kernel": 2,
               "activation": "linear" if norm else "relu"}]
    if norm:
        layers.append({"type": "batch_norm", "activation": "relu"})
    layers += [{"type": "max_pool", **pool}, {"type": "flatten"}]
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (4, 2 * 7 * 7)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    runs = []
    for paired in (True, False):
        net = network((2, 7, 7), layers, dtype="float32")
        for p in net.params:
            if p.decays:  # whole-number weights: equal sums, ties and zeros survive
                p.value[...] = rng.integers(-1, 2, p.value.shape) if paired else runs[0][0][p.name]
        relu_layer = net.layers[len(layers) - 3]
        assert relu_layer.relu_deferred
        if not paired:
            relu_layer.max_pool_after = False
            assert not net.layers[len(layers) - 2].applies_relu
        loss = get_loss("sparse_categorical_crossentropy")
        value, output = net.backprop(x[:3], y[:3], loss)
        weights = {p.name: p.value.copy() for p in net.params}
        runs.append((weights, value, output.copy(), [p.gradient().copy() for p in net.params],
                     net.forward(x).copy()))
    (_, *paired), (_, *apart) = runs
    assert paired[0] == apart[0]
    for a, b in zip(paired[1:], apart[1:]):
        for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert np.array_equal(u, v)


def test_batch_norm_uses_running_statistics_at_inference():
    net = network((4,), [{"type": "batch_norm", "momentum": 0.0}], dtype="float32")
    norm = net.layers[0]
    x = np.random.default_rng(0).normal(3.0, 2.0, (500, 4)).astype(np.float32)
    out = norm.forward(x, True, None)
    assert np.allclose(out.mean(axis=0), 0, atol=1e-4) and np.allclose(out.std(axis=0), 1, atol=1e-3)
    assert np.allclose(norm.running_mean, x.mean(axis=0), atol=1e-4)
    assert np.allclose(norm.running_var, x.var(axis=0, ddof=1), rtol=1e-4)
    single = norm.forward(x[:1], False, None)  # one sample: only running statistics can work
    assert np.allclose(single, (x[:1] - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + 1e-5),
                       atol=1e-3)


def test_multichannel_input_is_read_as_channels_height_width():
    """Flat rows are (C, H, W) in order; flatten gives the same order back."""
    net = network((2, 3, 4), [{"type": "flatten"}])
    x = np.arange(24.0).reshape(1, 24)
    flat = net.layers[0].forward(net._as_input(x), False, None)
    assert np.array_equal(flat, x)
