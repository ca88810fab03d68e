"""A small conv network through train, resume, early stopping, evaluate, predict and
gradcheck, on a 3000-image slice of the real MNIST."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nnctl import experiment
from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.data.mnist import load_mnist
from nnctl.weights import load

runner = CliRunner()
CONFIG = """\
data: {validation: 57000, augment: {shift: 1, rotate: 5}}
model:
  input: [1, 28, 28]
  layers:
    - {type: conv, filters: 4, kernel: 3, stride: 2, activation: relu}
    - {type: batch_norm}
    - {type: max_pool, size: 2, crop: true}
    - {type: dropout, rate: 0.2}
    - {units: 10, activation: softmax}
training:
  epochs: %d
  batch_size: 50
  learning_rate: 0.1
  optimizer: {name: sgd, momentum: 0.9}
  schedule: cosine
  early_stopping: %d
  seed: 4
"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_a_conv_network_trains_resumes_bit_identically_evaluates_and_predicts(tmp_path,
                                                                               mnist_cache):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG % (2, 0))
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    trained = run("train", config, "--out", whole, "--data-dir", mnist_cache)
    assert trained.exit_code == 0, trained.output
    assert "conv 0" in trained.output and "4 x 13 x 13" in trained.output

    def interrupt(report):
        raise KeyboardInterrupt  # Ctrl-C right after the first epoch is saved

    with pytest.raises(experiment.TrainingInterrupted):
        experiment.train(load_config(config), part, mnist_cache, on_epoch=interrupt)
    resumed = run("train", config, "--resume", part, "--data-dir", mnist_cache, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    a, b = load(whole), load(part)
    for layer_a, layer_b in zip(a.network.layers, b.network.layers):
        for key, value in layer_a.arrays().items():  # weights and batch-norm statistics
            assert np.array_equal(value, layer_b.arrays()[key]), key
    assert a.history[-1]["evaluations"]["test"]["accuracy"] > 0.7

    evaluated = run("evaluate", whole, "--data-dir", mnist_cache, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.output)
    assert report["accuracy"] == pytest.approx(a.history[-1]["evaluations"]["test"]["accuracy"])

    mnist = load_mnist(mnist_cache, download=False)
    images = []
    for index in range(5):
        images.append(tmp_path / f"{index}.png")
        Image.fromarray(mnist.test_images[index].reshape(28, 28)).save(images[-1])
    predicted = run("predict", *images, "--weights", whole, "--raw", "--json")
    assert predicted.exit_code == 0, predicted.output
    guesses = [item["label"] for item in json.loads(predicted.output)]
    expected = a.network.forward(a.scaler.transform(mnist.test_images[:5])).argmax(axis=1)
    assert guesses == expected.tolist()

    checked = run("gradcheck", config, "--data-dir", tmp_path)  # random inputs
    assert checked.exit_code == 0, checked.output


@pytest.mark.slow
def test_early_stopping_restores_the_best_epoch_with_its_batch_norm_statistics(tmp_path,
                                                                            mnist_cache):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.replace("schedule: cosine", "schedule: constant") % (5, 1))
    out = tmp_path / "w.npz"
    result = run("train", config, "--out", out, "--data-dir", mnist_cache, "--quiet")
    assert result.exit_code == 0, result.output
    checkpoint = load(out)
    accuracies = [h["evaluations"]["validation"]["accuracy"] for h in checkpoint.history]
    best = int(np.argmax(accuracies))
    mnist = load_mnist(mnist_cache, download=False)
    x = checkpoint.scaler.transform(mnist.train_images[3000:])
    accuracy = np.mean(checkpoint.network.forward(x).argmax(axis=1) == mnist.train_labels[3000:])
    assert accuracy == pytest.approx(accuracies[best], abs=1e-9)
