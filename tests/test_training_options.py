"""Training options: per-optimizer default rates, data.limit, validation fractions,
standardisation, monitored early stopping, the plateau schedule, save-best, log lines."""

import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl import experiment
from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.data.scaler import MinMaxScaler
from nnctl.errors import ConfigError
from nnctl.experiment import prepare_data
from nnctl.monitor import best_of
from nnctl.schedules import learning_rate, plateau_rate
from nnctl.trainer import fit
from nnctl.weights import load

runner = CliRunner()

SMALL = textwrap.dedent("""\
    data: {limit: 3000, validation: 0.2}
    model:
      layers:
        - {units: 16, activation: relu}
        - {units: 10, activation: softmax}
    training:
      epochs: 4
      batch_size: 50
    """)


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def train(*args):
    return runner.invoke(app, ["train", *[str(a) for a in args], "--quiet"])


@pytest.mark.parametrize("optimizer, expected", [("sgd", 0.1), ("adam", 0.001)])
def test_each_optimizer_has_its_own_default_rate(tmp_path, optimizer, expected):
    text = SMALL + f"  optimizer: {optimizer}\n"
    assert load_config(write(tmp_path, text)).training.learning_rate == expected
    assert load_config(write(tmp_path, text + "  learning_rate: 0.02\n")
                       ).training.learning_rate == 0.02


def test_limit_and_a_validation_fraction_shape_the_splits(mnist_cache, tmp_path):
    config = load_config(write(tmp_path, SMALL))
    assert config.data.sizes(60000) == (2400, 600)
    splits = prepare_data(config, mnist_cache)
    assert len(splits.train[0]) == 2400 and len(splits.validation[0]) == 600
    assert len(splits.test[0]) == 3000
    assert np.array_equal(splits.validation[1][:5], splits.validation[1][:5])


@pytest.mark.parametrize("data, message", [
    ("{validation: 1.5}", "data.validation: must be"),
    ("{limit: 1000, validation: 1000}", "data.validation: holds out 1000 of the 1000"),
    ("{limit: -3}", "data.limit: must be between 0 and 60000"),
])
def test_bad_limits_and_fractions_are_refused(tmp_path, data, message):
    text = SMALL.replace("data: {limit: 3000, validation: 0.2}", f"data: {data}")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("key", ["save_best: true", "schedule: plateau",
                                 "early_stopping: {patience: 2, monitor: validation_loss}"])
def test_watchers_of_the_validation_split_need_one(tmp_path, key):
    text = SMALL.replace("data: {limit: 3000, validation: 0.2}", "data: {limit: 3000}")
    with pytest.raises(ConfigError, match="needs a validation split"):
        load_config(write(tmp_path, text + f"  {key}\n"))


@pytest.mark.parametrize("mode, axis", [("standard", None), ("standard_per_pixel", 0)])
def test_standardisation_gives_zero_mean_and_unit_deviation(tmp_path, mode, axis):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (500, 784)).astype(np.uint8)
    x[:, 0] = 7  # a constant pixel maps to 0, not to a division by zero
    scaled = MinMaxScaler.fit(x, mode).transform(x, np.float64)
    assert np.allclose(scaled.mean(axis=axis), 0, atol=1e-9)
    deviation = scaled.std(axis=axis)
    if axis is None:
        assert deviation == pytest.approx(1.0)
    else:
        assert np.all(scaled[:, 0] == 0) and np.allclose(deviation[1:], 1.0)


def test_plateau_cuts_the_rate_after_patience_epochs_without_improvement():
    scores = [0.5, 0.6, 0.6, 0.59, 0.7, 0.7, 0.7, 0.7]
    rates = [plateau_rate(1.0, scores[:e], patience=2, factor=0.5) for e in range(len(scores) + 1)]
    #        no scores, then after each epoch: best 0.5, 0.6, wait 1, cut, 0.7, wait 1, cut, wait 1
    assert rates == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert plateau_rate(1.0, [0.5, 0.5005, 0.501], patience=2, factor=0.5, min_delta=0.01) == 0.5
    assert plateau_rate(1.0, [0.5] * 9, patience=1, factor=0.1, minimum=0.01) == 0.01
    assert learning_rate("plateau", 1.0, 1, 5, warmup=2) == 0.5


def test_best_of_reads_the_monitored_metric():
    history = [{"epoch": e, "evaluations": {"validation": {"accuracy": a, "loss": l}}}
               for e, (a, l) in enumerate([(0.90, 0.40), (0.93, 0.35), (0.92, 0.30)], 1)]
    assert best_of(history, "validation_accuracy")[0] == 2
    assert best_of(history, "validation_loss")[0] == 3
    assert best_of(history, "validation_loss", min_delta=0.11)[0] == 1


def test_early_stopping_on_validation_loss_with_min_delta(tmp_path, mnist_cache):
    text = SMALL + ("  epochs: 30\n  learning_rate: 0.5\n"
                    "  early_stopping: {patience: 2, monitor: validation_loss, min_delta: 0.001}\n")
    out = tmp_path / "w.npz"
    result = train(write(tmp_path, text.replace("  epochs: 4\n", "")), "--out", out,
                   "--data-dir", mnist_cache)
    assert result.exit_code == 0, result.output
    history = load(out).history
    best, _ = best_of(history, "validation_loss", 0.001)
    assert len(history) < 30 and history[-1]["epoch"] - best == 2


def test_save_best_keeps_the_best_weights_and_resumes_from_the_last(tmp_path, mnist_cache):
    text = SMALL.replace("epochs: 4", "epochs: 6") + "  learning_rate: 1.5\n  save_best: true\n"
    config = write(tmp_path, text)
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    assert train(config, "--out", whole, "--data-dir", mnist_cache).exit_code == 0

    def interrupt(report):
        if report.epoch == 3:
            raise KeyboardInterrupt  # Ctrl-C right after the third epoch is saved

    with pytest.raises(experiment.TrainingInterrupted):
        experiment.train(load_config(config), part, mnist_cache, on_epoch=interrupt)
    resumed = train(config, "--resume", part, "--data-dir", mnist_cache)
    assert resumed.exit_code == 0, resumed.output
    a, b = load(whole, optimizer=True), load(part)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    for x, y in zip(a.network.params, b.network.params):
        assert np.array_equal(x.value, y.value), x.name
    best, _ = best_of(a.history, "validation_accuracy")
    splits = prepare_data(load_config(config), mnist_cache)
    x, labels = splits.validation
    accuracy = np.mean(a.network.forward(x).argmax(axis=1) == labels)
    assert accuracy == pytest.approx(
        a.history[best - 1]["evaluations"]["validation"]["accuracy"], abs=1e-9)
    assert best != 6 and "last" in a.optimizer_state  # lr 1.5 makes a later epoch worse


def test_log_every_reports_the_running_figures():
    from nnctl.activations import get_activation
    from nnctl.losses import get_loss
    from nnctl.network import Network
    from nnctl.optimizers import SGD

    rng = np.random.default_rng(0)
    x = rng.random((120, 6), dtype=np.float32)
    y = rng.integers(0, 3, 120)
    net = Network.create([6, 5, 3], [get_activation("tanh"), get_activation("softmax")], rng)
    logs = []
    reports = fit(net, get_loss("sparse_categorical_crossentropy"), SGD(0.1), x, y, epochs=2,
                  batch_size=10, rng=rng, log_every=4, on_log=logs.append)
    assert [(l.epoch, l.batch) for l in logs] == [(e, b) for e in (1, 2) for b in (4, 8, 12)]
    last = logs[-1]
    assert last.train_loss == pytest.approx(reports[-1].train_loss)
    assert last.train_accuracy == pytest.approx(reports[-1].train_accuracy)


def test_cli_limit_log_lines_and_an_uncut_epoch_table(tmp_path, mnist_cache):
    config = write(tmp_path, SMALL.replace("limit: 3000, ", ""))
    result = runner.invoke(app, ["train", str(config), "--limit", "1000", "--epochs", "2",
                                 "--log-every", "8", "--out", str(tmp_path / "w.npz"),
                                 "--data-dir", str(mnist_cache)])
    assert result.exit_code == 0, result.output
    assert "epoch 1 batch 8/16: loss" in result.output
    header = "\n".join(line for line in result.output.splitlines()[:40] if "val" in line
                       or "loss" in line)
    for name in ("epoch", "lr", "train", "loss", "acc", "val", "test", "seconds", "ETA"):
        assert name in header
    assert len(load(tmp_path / "w.npz").history) == 2
