import json
import zipfile

import numpy as np
import pytest

from nnctl.config import validate
from nnctl.data.scaler import MinMaxScaler
from nnctl.errors import UsageError
from nnctl.experiment import build_network
from nnctl.weights import Checkpoint, load, save

RAW = {"model": {"layers": [{"units": 5, "activation": "relu"},
                            {"units": 10, "activation": "softmax"}]}}


@pytest.fixture
def checkpoint():
    config = validate(RAW)
    network = build_network(config, np.random.default_rng(0))
    scaler = MinMaxScaler(np.array(0.0), np.array(255.0))
    return Checkpoint(network, scaler, config, [{"epoch": 1}])


def test_round_trip_and_plain_numpy_can_read_it(tmp_path, checkpoint):
    path = save(tmp_path / "w.npz", checkpoint)
    with np.load(path, allow_pickle=False) as archive:
        assert archive["W0"].shape == (5, 784) and archive["b1"].shape == (10,)
        assert json.loads(str(archive["config"]))["model"]["layers"][0]["units"] == 5
        assert int(archive["format_version"]) == 2
        assert str(archive["nnctl_version"])
    again = load(path)
    assert all(np.array_equal(a, b) for a, b in zip(again.network.weights, checkpoint.network.weights))
    assert again.history == [{"epoch": 1}]
    assert [p for p in tmp_path.iterdir()] == [path]  # no temporary file left


def rewrite(path, tmp_path, **changes):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    target = tmp_path / "bad.npz"
    np.savez(target, **arrays)
    return target


@pytest.mark.parametrize("changes, expected", [
    ({"W0": np.zeros((5, 700), np.float32)}, "W0 declares shape (5, 700), the config says (5, 784)"),
    ({"W1": None}, "missing arrays W1"),
    ({"W7": np.zeros(3)}, "unexpected arrays W7"),
    ({"b0": np.full(5, np.nan, np.float32)}, "b0 holds nan or infinite values"),
    ({"format_version": np.array(99)}, "format version 99 is newer"),
    ({"config": np.array("{not json")}, "'config' is not valid JSON"),
    ({"scaler_min": None}, "missing scaler_min"),
])
def test_damaged_weights_files_are_one_line_errors(tmp_path, checkpoint, changes, expected):
    bad = rewrite(save(tmp_path / "w.npz", checkpoint), tmp_path, **changes)
    with pytest.raises(UsageError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load(bad)


def test_pickled_objects_are_refused_without_running_them(tmp_path, checkpoint):
    path = save(tmp_path / "w.npz", checkpoint)
    bad = rewrite(path, tmp_path, history=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UsageError, match="pickled objects"):
        load(bad)


@pytest.mark.parametrize("content", [b"", b"not a zip", None])
def test_not_a_weights_file(tmp_path, checkpoint, content):
    path = tmp_path / "w.npz"
    if content is None:  # a truncated zip
        save(path, checkpoint)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(UsageError, match="w.npz: not an nnctl weights file"):
        load(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UsageError, match="no such weights file"):
        load(tmp_path / "nope.npz")
    with pytest.raises(UsageError, match="is a directory"):
        load(tmp_path)


def test_saving_into_a_missing_directory_is_a_usage_error(tmp_path, checkpoint):
    with pytest.raises(UsageError, match="does not exist"):
        save(tmp_path / "no" / "w.npz", checkpoint)
    assert zipfile.is_zipfile(save(tmp_path / "w.npz", checkpoint))
