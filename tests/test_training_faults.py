"""Divergence, Ctrl-C, a kill during a save, and resume, on the real MNIST (a 5000-image slice)."""

import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.weights import load

runner = CliRunner()
SLICE = """\
data: {validation: 55000}
model:
  layers:
    - {units: 32, activation: %s}
    - {units: 10, activation: %s}
loss: %s
training:
  epochs: %d
  batch_size: 50
  learning_rate: %s
  optimizer: {name: sgd, momentum: 0.9}
  seed: 3
"""


def config(tmp_path, epochs=2, rate="0.1", hidden="relu", output="softmax",
           loss="sparse_categorical_crossentropy"):
    path = tmp_path / "c.yaml"
    path.write_text(SLICE % (hidden, output, loss, epochs, rate))
    return path


def train(*args):
    return runner.invoke(app, ["train", *[str(a) for a in args], "--quiet"])


def test_divergence_stops_with_advice_and_keeps_the_good_weights(tmp_path, mnist_cache):
    setup = dict(rate="50", hidden="relu", output="linear", loss="mse")
    out = tmp_path / "w.npz"
    good = train(config(tmp_path, epochs=1), "--out", out, "--data-dir", mnist_cache)
    assert good.exit_code == 0, good.output
    before = out.read_bytes()
    result = train(config(tmp_path, epochs=3, **setup), "--out", out, "--data-dir", mnist_cache)
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output and "smaller learning rate" in result.output
    assert "learning rate 50" in result.output
    assert "Traceback" not in result.output and "Warning" not in result.output
    assert out.read_bytes() == before


def regularised(tmp_path, epochs):
    """The slice config with dropout, augmentation and a schedule: all of them draw on the
    random generator or the epoch count, so resume must restore both."""
    path = config(tmp_path, epochs=epochs)
    text = path.read_text().replace("activation: relu}", "activation: relu, dropout: 0.3}")
    text = text.replace("data: {validation: 55000}",
                        "data: {validation: 55000, augment: {shift: 2, rotate: 10}}")
    path.write_text(text + "  schedule: {name: cosine, warmup: 1}\n")
    return path


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, mnist_cache):
    from nnctl import experiment
    from nnctl.config import load_config

    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    assert train(regularised(tmp_path, 3), "--out", whole, "--data-dir", mnist_cache).exit_code == 0

    def interrupt(report):
        raise KeyboardInterrupt  # Ctrl-C right after the first epoch is saved

    with pytest.raises(experiment.TrainingInterrupted):
        experiment.train(load_config(regularised(tmp_path, 3)), part, mnist_cache,
                         on_epoch=interrupt)
    assert load(part).train_state["epochs_done"] == 1
    resumed = runner.invoke(app, ["train", str(regularised(tmp_path, 3)), "--resume", str(part),
                                  "--data-dir", str(mnist_cache)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming at epoch 2 of 3" in resumed.output
    a, b = load(whole), load(part)
    assert len(b.history) == 3 and b.train_state["epochs_done"] == 3
    for x, y in zip(a.network.params, b.network.params):
        assert np.array_equal(x.value, y.value), x.name
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def run_nnctl(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "nnctl", *map(str, args)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_ctrl_c_stops_promptly_keeps_the_last_epoch_and_says_how_to_resume(tmp_path, mnist_cache):
    out, metrics = tmp_path / "w.npz", tmp_path / "m.jsonl"
    process = run_nnctl("train", config(tmp_path, epochs=5), "--out", out, "--metrics", metrics,
                        "--data-dir", mnist_cache, "--epochs", 500, "--learning-rate", 0.05,
                        "--batch-size", 100)
    deadline = time.monotonic() + 60
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    hint = (f"nnctl train {tmp_path / 'c.yaml'} --resume {out} --epochs 500 --batch-size 100 "
            f"--learning-rate 0.05 --data-dir {mnist_cache} --metrics {metrics}")
    assert f"continue with: {hint}\n" in stderr
    saved = load(out)
    done = saved.train_state["epochs_done"]
    assert done >= 2 and f"weights of epoch {done} are in" in stderr
    assert len(saved.history) == done
    # The hint, run as printed, continues this very run: its settings pass the resume check.
    from nnctl.cli.app import OVERRIDE_OPTIONS
    from nnctl.config import load_config
    from nnctl.experiment import check_resumable

    words = shlex.split(hint)
    given = dict(zip(words[5::2], words[6::2]))
    overrides = {key: (float if "rate" in key else int)(given[option])
                 for key, option in OVERRIDE_OPTIONS.items() if option in given}
    assert check_resumable(saved, load_config(words[2], overrides)) == done + 1


def test_a_process_killed_while_saving_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "w.npz"
    script = f"""
import numpy as np
from nnctl.config import validate
from nnctl.data.scaler import MinMaxScaler
from nnctl.experiment import build_network
from nnctl.weights import Checkpoint, save
config = validate({{"model": {{"layers": [{{"units": 2000, "activation": "relu"}},
                                          {{"units": 10, "activation": "softmax"}}]}}}})
net = build_network(config, np.random.default_rng(0))
checkpoint = Checkpoint(net, MinMaxScaler(np.array(0.0), np.array(255.0)), config)
save({str(path)!r}, checkpoint)
print("ready", flush=True)
while True:
    save({str(path)!r}, checkpoint)
"""
    for delay in (0.05, 0.13, 0.31):
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert load(path).network.weights[0].shape == (2000, 784)


@pytest.mark.parametrize("where, code, message", [
    (lambda tmp: tmp / "missing" / "w.npz", 2, "does not exist"),
    (lambda tmp: tmp, 2, "is a directory"),
    (lambda tmp: "/proc/nnctl-weights.npz", 1, "cannot write there"),
])
def test_bad_output_paths_fail_before_training(tmp_path, mnist_cache, where, code, message):
    result = train(config(tmp_path, epochs=50), "--out", where(tmp_path), "--data-dir", mnist_cache)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_predict_names_each_bad_path_and_still_predicts_the_rest(tmp_path, mnist_cache):
    out = tmp_path / "w.npz"
    assert train(config(tmp_path, epochs=1), "--out", out, "--data-dir", mnist_cache).exit_code == 0
    from PIL import Image

    good = tmp_path / "good.png"
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    Image.fromarray(digit).save(good)
    result = runner.invoke(app, ["predict", str(tmp_path / "none.png"), str(tmp_path), str(good),
                                 "--weights", str(out)])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'none.png'}: no such image file" in result.output
    assert "is a directory" in result.output and "good.png:" in result.output
