"""Crafted weights files: declared sizes, zip bombs, optimizer slots, scalers, damaged
history and training state. Each is refused from what it declares, in one line."""

import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import validate
from nnctl.data.scaler import MinMaxScaler
from nnctl.errors import UsageError
from nnctl.experiment import build_network
from nnctl.optimizers import SGD
from nnctl.weights import Checkpoint, load, save

RAW = {"model": {"layers": [{"units": 5, "activation": "relu"},
                            {"units": 10, "activation": "softmax"}]},
       "training": {"epochs": 3}}
runner = CliRunner()


@pytest.fixture
def resumable(tmp_path):
    """A resumable checkpoint with momentum slots, saved at w.npz."""
    config = validate(RAW)
    network = build_network(config, np.random.default_rng(0))
    optimizer = SGD(0.1, 0.9)
    optimizer.state = {"velocity": [np.ones_like(p.value) for p in network.params]}
    history = [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "seconds": 1.0,
                "learning_rate": 0.1, "evaluations": {"test": {"loss": 1.0, "accuracy": 0.5,
                                                               "samples": 10}}}]
    state = {"epochs_done": 1, "rng": np.random.default_rng(0).bit_generator.state,
             "optimizer_steps": 10}
    checkpoint = Checkpoint(network, MinMaxScaler(np.array(0.0), np.array(255.0)), config,
                            history, state, optimizer.state)
    return save(tmp_path / "w.npz", checkpoint)


def npy_member(shape, dtype="<f4", body=b"", fill=0):
    """A .npy file declaring `shape` and `dtype`, followed by `body` then `fill` zero bytes."""
    out = io.BytesIO()
    npy.write_array_header_2_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue() + body + bytes(fill)


def replace_member(path, target, key, data):
    """Copy the .npz at `path` to `target` with member `key` replaced by raw .npy bytes."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(
            target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            if info.filename != f"{key}.npy":
                out.writestr(info.filename, source.read(info))
        out.writestr(f"{key}.npy", data)
    return target


def refused_cheaply(path, match, **kwargs):
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=match):
            load(path, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"{peak:,} bytes traced before refusing"


def test_a_header_declaring_745_gib_is_refused_from_the_header(tmp_path, resumable):
    bad = replace_member(resumable, tmp_path / "bad.npz", "W0", npy_member((500_000, 400_000)))
    assert bad.stat().st_size < 10_000
    refused_cheaply(bad, r"W0 declares shape \(500000, 400000\), the config says \(5, 784\)")


def test_a_text_member_declaring_gigabytes_is_refused(tmp_path, resumable):
    bad = replace_member(resumable, tmp_path / "bad.npz", "history", npy_member((), "<U200000000"))
    refused_cheaply(bad, "'history' is longer than")


@pytest.mark.parametrize("key", ["W0", "opt_velocity_0"])
def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path, resumable, key):
    bomb = npy_member((5_000, 5_000), fill=100_000_000)  # 100 MB of zeros, 100 KB zipped
    bad = replace_member(resumable, tmp_path / "bad.npz", key, bomb)
    assert bad.stat().st_size < 500_000
    refused_cheaply(bad, f"{key} declares shape")


def test_bytes_beyond_a_matching_header_are_refused(tmp_path, resumable):
    stuffed = npy_member((5, 784), fill=5 * 784 * 4 + 30_000_000)
    bad = replace_member(resumable, tmp_path / "bad.npz", "W0", stuffed)
    refused_cheaply(bad, r"W0 holds 30,015,\d+ bytes, more than its declared")


def test_optimizer_slots_are_read_only_to_resume(resumable):
    assert load(resumable).optimizer_state == {}
    slots = load(resumable, optimizer=True).optimizer_state["velocity"]
    assert [s.shape for s in slots] == [(5, 784), (5,), (10, 5), (10,)]


def rewrite(path, target, **changes):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays.update(changes)
    np.savez(target, **arrays)
    return target


@pytest.mark.parametrize("low, high", [(np.nan, 255.0), (0.0, np.inf), (-np.inf, 1.0),
                                       (200.0, 100.0)])
def test_a_non_finite_or_reversed_scaler_is_refused(tmp_path, resumable, low, high):
    bad = rewrite(resumable, tmp_path / "bad.npz", scaler_min=np.array(low),
                  scaler_max=np.array(high))
    with pytest.raises(UsageError, match="scaler"):
        load(bad)
    result = runner.invoke(app, ["evaluate", str(bad), "--json"])
    assert result.exit_code == 2 and "NaN" not in result.output


@pytest.mark.parametrize("history, state", [
    ([1, 2], None),
    ([{"epoch": "one"}], None),
    ([{"epoch": 1, "evaluations": {"test": {"accuracy": "high"}}}], None),
    (None, {"epochs_done": 1, "rng": {}, "optimizer_steps": -1}),
    (None, {"epochs_done": 0, "rng": {}, "optimizer_steps": 0}),
    (None, {"epochs_done": 2, "rng": {}, "optimizer_steps": 10}),
    (None, {"epochs_done": "1", "rng": {}, "optimizer_steps": 10}),
    (None, [1]),
], ids=["not records", "epoch text", "accuracy text", "negative steps", "zero epochs",
        "more epochs than history", "text epochs", "a list"])
def test_damaged_history_or_train_state_is_refused_on_resume(tmp_path, resumable, history,
                                                             state):
    changes = {}
    if history is not None:
        changes["history"] = np.array(json.dumps(history))
    if state is not None:
        changes["train_state"] = np.array(json.dumps(state))
    bad = rewrite(resumable, tmp_path / "bad.npz", **changes)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(RAW))
    result = runner.invoke(app, ["train", str(config), "--resume", str(bad), "-q"])
    assert result.exit_code == 2, result.output
    assert "is damaged" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1

