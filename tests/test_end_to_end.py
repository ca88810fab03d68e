"""train, evaluate and predict on the real MNIST, downloaded from a local HTTP mirror."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.data.mnist import load_mnist

runner = CliRunner()
CONFIG = """\
model:
  layers:
    - {units: 128, activation: relu}
    - {units: 10, activation: softmax}
data: {validation: 5000}
training:
  epochs: 2
  batch_size: 64
  learning_rate: 0.05
  optimizer: {name: sgd, momentum: 0.9, nesterov: true}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_mnist):
    """Weights trained by `nnctl train` with MNIST downloaded over HTTP through the env var."""
    from tests.conftest import Mirror

    root = tmp_path_factory.mktemp("run")
    config = root / "c.yaml"
    config.write_text(CONFIG)
    mirror = Mirror(shared_mnist)
    try:
        result = runner.invoke(app, ["train", str(config), "--out", str(root / "w.npz"),
                                     "--data-dir", str(root / "data"), "--metrics",
                                     str(root / "m.jsonl")],
                               env={"NNCTL_MNIST_MIRROR": mirror.url})
    finally:
        mirror.close()
    assert result.exit_code == 0, result.output
    return root, result.output


def test_train_prints_a_summary_a_row_per_epoch_and_saves(trained):
    root, output = trained
    assert "101,770" in output  # 784*128+128 + 128*10+10
    assert "val" in output and "acc" in output and "best epoch" in output
    lines = (root / "m.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
    assert (root / "w.npz").is_file()


def test_evaluate_json_reports_above_90_percent(trained):
    root, _ = trained
    result = runner.invoke(app, ["evaluate", str(root / "w.npz"), "--data-dir",
                                 str(root / "data"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["accuracy"] > 0.9 and report["samples"] == 10000
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10000
    assert np.trace(confusion) / 10000 == pytest.approx(report["accuracy"])
    assert len(report["per_class"]) == 10 and 0 < report["loss"] < 1
    text = runner.invoke(app, ["evaluate", str(root / "w.npz"), "--data-dir",
                               str(root / "data")])
    assert "confusion matrix" in text.output and "precision" in text.output


def test_predict_users_pictures_of_test_digits(trained):
    root, _ = trained
    mnist = load_mnist(root / "data", sources=[])
    pictures = {}
    for index, label in ((0, 7), (1, 2), (2, 1), (3, 0)):
        digit = mnist.test_images[index].reshape(28, 28)
        assert mnist.test_labels[index] == label
        inverted = 255 - digit  # dark ink on white paper
        shifted = np.zeros((60, 60), np.uint8)
        shifted[2:30, 30:58] = digit  # off-centre in a larger canvas
        large = np.asarray(Image.fromarray(digit).resize((200, 200), Image.Resampling.BICUBIC))
        for kind, array in (("inverted", inverted), ("shifted", shifted), ("large", large)):
            path = root / f"{label}-{kind}.png"
            Image.fromarray(array).save(path)
            pictures[path] = label
    blank = root / "blank.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(blank)
    files = [str(p) for p in pictures] + [str(blank)]
    result = runner.invoke(app, ["predict", *files, "--weights", str(root / "w.npz"), "--json"])
    assert result.exit_code == 2  # the blank image failed, the others were still predicted
    answers = json.loads(result.stdout)
    assert {a["file"]: a.get("label") for a in answers} == {
        **{str(p): label for p, label in pictures.items()}, str(blank): None}
    assert "no ink found" in answers[-1]["error"]
    assert all(abs(sum(a["probabilities"]) - 1) < 1e-4 for a in answers[:-1])
    shown = runner.invoke(app, ["predict", files[0], "--weights", str(root / "w.npz"), "--show"])
    assert shown.exit_code == 0 and "@@" in shown.output


def test_evaluate_split_validation_is_the_held_out_images_training_reported(trained):
    root, _ = trained
    result = runner.invoke(app, ["evaluate", str(root / "w.npz"), "--data-dir",
                                 str(root / "data"), "--split", "validation", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    last = json.loads((root / "m.jsonl").read_text().splitlines()[-1])
    assert report["samples"] == 5000
    assert report["accuracy"] == last["evaluations"]["validation"]["accuracy"]
    assert report["loss"] == pytest.approx(last["evaluations"]["validation"]["loss"], rel=1e-6)
