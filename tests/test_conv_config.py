"""Layer syntax in the config: types, keys, and shapes checked through the whole stack."""

import json

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.errors import UsageError
from nnctl.experiment import build_network
from nnctl.weights import FORMAT_VERSION, Checkpoint, load, save
from tests.test_config import problems, write

CNN = """\
model:
  input: [1, 28, 28]
  layers:
    - {type: conv, filters: 4, kernel: 3, activation: relu}
    - {type: max_pool, size: 2}
    - {type: batch_norm, activation: relu}
    - {type: dropout, rate: 0.25}
    - {units: 10, activation: softmax}
"""


def test_a_conv_stack_gets_an_implied_flatten_and_its_shapes():
    config = load_config("configs/cnn.yaml")
    network = build_network(config, np.random.default_rng(0))
    rows = [(name, shape, count) for name, shape, count, _ in network.summary()]
    assert rows == [("conv 0", (32, 26, 26), 320), ("max_pool 1", (32, 13, 13), 0),
                    ("conv 2", (64, 11, 11), 18496), ("max_pool 3", (64, 5, 5), 0),
                    ("flatten 4", (1600,), 0), ("dropout 5", (1600,), 0),
                    ("dense 6", (10,), 16010)]
    implied = build_network(load_config("configs/lenet5.yaml"), np.random.default_rng(0))
    assert [layer.kind for layer in implied.layers][4:6] == ["flatten", "dense"]


@pytest.mark.parametrize("edit, expected", [
    (("kernel: 3", "kernel: 30"), ":4: model.layers[0].kernel: a 30x30 kernel is larger than "
                                  "its 28x28 input"),
    (("size: 2}", "size: 3}"), ":5: model.layers[1].size: a 3x3 pool with stride 3x3 does not "
                               "divide its 26x26 input (add crop: true"),
    (("input: [1, 28, 28]", "input: 784"), ":4: model.layers[0].type: conv needs a (channels, "
                                           "height, width) input; the layer before gives 784"),
    (("type: max_pool", "type: maxpool"), ":5: model.layers[1].type: unknown value 'maxpool'; "
                                          "did you mean 'max_pool'?"),
    (("rate: 0.25", "rate: 1.5"), ":7: model.layers[3].rate: must be a number in [0, 1)"),
    (("filters: 4,", "filters: 4, units: 3,"), ":4: model.layers[0].units: unknown key"),
    (("padding", "padding"), None),
    (("kernel: 3", "kernel: [3, 0]"), "model.layers[0].kernel: must be between 1 and 64, got 0"),
    (("{units: 10, activation: softmax}", "{type: flatten}"),
     "model.layers[4].type: the output layer must be dense"),
    (("input: [1, 28, 28]", "input: [3, 28, 28]"), "model.input: MNIST images are [1, 28, 28]"),
])
def test_each_misfit_is_one_line_on_its_layer(tmp_path, edit, expected):
    text = CNN.replace(*edit)
    if expected is None:
        load_config(write(tmp_path, text))
        return
    lines = problems(tmp_path, text)
    assert len(lines) == 1 and expected in lines[0], lines
    if expected.startswith(":"):
        assert lines[0].startswith(f"{tmp_path / 'c.yaml'}:")


def test_a_config_round_trips_through_the_weights_file(tmp_path):
    config = load_config(write(tmp_path, CNN.replace("kernel: 3", "kernel: [3, 2], stride: 2, "
                                                                   "padding: same")))
    network = build_network(config, np.random.default_rng(0))
    norm = network.layers[2]
    norm.running_mean[:] = [1, 2, 3, 4]
    norm.running_var[:] = [5, 6, 7, 8]
    from nnctl.data.scaler import MinMaxScaler

    path = save(tmp_path / "w.npz", Checkpoint(network, MinMaxScaler.fit(np.arange(256)), config))
    with np.load(path) as archive:
        assert int(archive["format_version"]) == FORMAT_VERSION == 3
        assert archive["W0"].shape == (4, 1, 3, 2)  # (filters, channels, kh, kw)
        assert archive["mean2"].tolist() == [1, 2, 3, 4]
    again = load(path)
    assert again.config == config
    for a, b in zip(network.layers, again.network.layers):
        for key, value in a.arrays().items():
            assert np.array_equal(value, b.arrays()[key]), key
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    assert np.array_equal(network.forward(x), again.network.forward(x))


def test_a_version_1_weights_file_still_loads(tmp_path):
    """Written as nnctl wrote dense networks before layers had types."""
    rng = np.random.default_rng(0)
    config = {"model": {"input": 784, "init": "auto", "layers": [
        {"units": 16, "activation": "relu", "slope": None, "alpha": None, "dropout": 0.0},
        {"units": 10, "activation": "softmax", "slope": None, "alpha": None, "dropout": 0.0}]}}
    arrays = {"format_version": np.array(1), "nnctl_version": np.array("0.1.0"),
              "config": np.array(json.dumps(config)), "history": np.array("[]"),
              "scaler_min": np.array(0.0), "scaler_max": np.array(255.0),
              "W0": rng.random((16, 784), dtype=np.float32), "b0": np.zeros(16, np.float32),
              "W1": rng.random((10, 16), dtype=np.float32), "b1": np.ones(10, np.float32)}
    np.savez(tmp_path / "v1.npz", **arrays)
    checkpoint = load(tmp_path / "v1.npz")
    assert np.array_equal(checkpoint.network.weights[0], arrays["W0"])
    assert np.array_equal(checkpoint.network.biases[1], arrays["b1"])
    arrays["W0"] = arrays["W0"][:, :700]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UsageError, match=r"W0 declares shape \(16, 700\), the config says "
                                         r"\(16, 784\)"):
        load(tmp_path / "bad.npz")


def test_the_served_model_lists_every_layer_and_keeps_dense_dropout_on_its_row():
    from nnctl.serve.model import _layers

    rows = _layers(build_network(load_config("configs/cnn.yaml"), np.random.default_rng(0)))
    assert [(r["name"], r["inputs"], r["units"], r["parameters"]) for r in rows][:2] == [
        ("conv 0", 784, 32 * 26 * 26, 320), ("max_pool 1", 32 * 26 * 26, 32 * 13 * 13, 0)]
    best = _layers(build_network(load_config("configs/cnn-best.yaml"), np.random.default_rng(0)))
    dense = next(r for r in best if r["name"] == "dense 7")
    assert dense["dropout"] == 0.5 and not any(r["name"] == "dropout 7" for r in best)
