"""Signals sent to a real `nnctl train`, stops landing during a save, full disks and full
devices, and a float64 run at an absurd learning rate: a message, the right exit code,
no temporary file left, and the file says what it holds."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.weights import load
from tests.test_training_faults import config as slice_config, run_nnctl as start

runner = CliRunner()


def config(tmp_path, epochs=500, dtype="float32", **kwargs):
    """The 5000-image slice config of the training-fault tests, in `dtype`."""
    path = slice_config(tmp_path, epochs=epochs, **kwargs)
    path.write_text(path.read_text() + f"  dtype: {dtype}\n")
    return path


def wait_for_epochs(process, metrics, count):
    deadline = time.monotonic() + 60
    while not (metrics.exists() and metrics.read_text().count("\n") >= count):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)


def hidden_files(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path, mnist_cache, signum):
    out, metrics = tmp_path / "w.npz", tmp_path / "m.jsonl"
    process = start("train", config(tmp_path), "--out", out, "--metrics", metrics,
                    "--data-dir", mnist_cache)
    wait_for_epochs(process, metrics, 1)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signum, stderr
    name = signal.Signals(signum).name
    done = load(out).train_state["epochs_done"]
    assert stderr.startswith(f"error: stopped by {name}; the weights of epoch {done} are in {out}")
    assert f"--resume {out}" in stderr and "Traceback" not in stderr
    assert stderr.count("\n") == 1 and hidden_files(tmp_path) == []


@pytest.mark.slow
def test_repeated_ctrl_c_never_prints_a_traceback(tmp_path, mnist_cache):
    out, metrics = tmp_path / "w.npz", tmp_path / "m.jsonl"
    process = start("train", config(tmp_path), "--out", out, "--metrics", metrics,
                    "--data-dir", mnist_cache)
    wait_for_epochs(process, metrics, 1)
    for _ in range(20):
        process.send_signal(signal.SIGINT)
        time.sleep(0.002)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.startswith("error: interrupted; the weights of epoch")
    assert hidden_files(tmp_path) == []


STOP_IN_SAVE = """
import os, signal, sys
import numpy as np
real, calls = np.savez, []
def savez(file, **arrays):
    calls.append(1)
    if len(calls) == {save}:  # this save: partly written, then the stop
        file.write(b"x" * 100_000)
        os.kill(os.getpid(), {signum})
    real(file, **arrays)
np.savez = savez
from nnctl.cli.app import main
sys.argv = ["nnctl", *sys.argv[1:]]
main()
"""


def stop_in_save(tmp_path, mnist_cache, out, signum, save):
    return subprocess.run(
        [sys.executable, "-c", STOP_IN_SAVE.format(signum=int(signum), save=save), "train",
         config(tmp_path), "--out", out, "--data-dir", mnist_cache, "-q"],
        capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_ctrl_c_during_a_save_names_the_epoch_in_the_file(tmp_path, mnist_cache):
    out = tmp_path / "w.npz"
    process = stop_in_save(tmp_path, mnist_cache, out, signal.SIGINT, save=2)
    assert process.returncode == 130, process.stderr
    assert f"the weights of epoch 1 are in {out}" in process.stderr
    assert load(out).train_state["epochs_done"] == 1
    assert hidden_files(tmp_path) == [] and "Traceback" not in process.stderr


@pytest.mark.slow
def test_sigterm_during_the_first_save_over_an_older_file_leaves_it(tmp_path, mnist_cache):
    out = tmp_path / "w.npz"
    out.write_bytes(b"an older run's weights")
    process = stop_in_save(tmp_path, mnist_cache, out, signal.SIGTERM, save=1)
    assert process.returncode == 143, process.stderr
    assert process.stderr == (f"error: stopped by SIGTERM; no epoch was completed; {out} is "
                              "as it was\n")
    assert out.read_bytes() == b"an older run's weights" and hidden_files(tmp_path) == []


def test_a_full_disk_while_saving_keeps_the_previous_file(tmp_path, mnist_cache, full_disk):
    disk = full_disk(300)  # one 784-32-10 file with momentum (200 KB) fits, not a second
    out = disk / "w.npz"
    result = runner.invoke(app, ["train", str(config(tmp_path, epochs=2)), "--out", str(out),
                                 "--data-dir", str(mnist_cache), "-q"])
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert load(out).train_state["epochs_done"] == 1 and hidden_files(disk) == []


def test_a_full_metrics_device_is_one_line(tmp_path, mnist_cache):
    result = runner.invoke(app, ["train", str(config(tmp_path, epochs=2)), "--out",
                                 str(tmp_path / "w.npz"), "--metrics", "/dev/full",
                                 "--data-dir", str(mnist_cache), "-q"])
    assert result.exit_code == 1
    assert result.output == ("error: /dev/full: cannot write the metrics file (No space left "
                             "on device); the weights of epoch 1 were saved\n")


def test_a_full_disk_during_the_download_says_so_and_leaves_nothing(tmp_path, shared_mnist,
                                                                    full_disk, monkeypatch):
    disk = full_disk(1024)
    monkeypatch.setenv("NNCTL_MNIST_MIRROR", str(shared_mnist))
    result = runner.invoke(app, ["train", str(config(tmp_path, epochs=1)), "--data-dir",
                                 str(disk), "--out", str(tmp_path / "w.npz")])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {disk / 'mnist'}: the disk is full")
    assert "cannot read" not in result.output and "Traceback" not in result.output
    assert not (disk / "mnist").exists()  # the partial file, and the folder made for it


def test_a_float64_run_at_lr_1e300_is_stopped_as_diverged(tmp_path, mnist_cache):
    before = tmp_path / "w.npz"
    path = config(tmp_path, epochs=3, rate="1e300", hidden="tanh", output="tanh", loss="mse",
                  dtype="float64")
    result = runner.invoke(app, ["train", str(path), "--out", str(before), "--data-dir",
                                 str(mnist_cache), "-q"])
    assert result.exit_code == 1, result.output
    assert "training diverged in epoch 1" in result.output and not before.exists()


def test_a_loss_rising_by_orders_of_magnitude_is_divergence():
    from nnctl.config import validate
    from nnctl.experiment import build_network, build_optimizer
    from nnctl.losses import get_loss
    from nnctl.trainer import TrainingDiverged, fit

    config = validate({"model": {"layers": [{"units": 10, "activation": "linear"}]},
                       "loss": "mse", "training": {"dtype": "float64", "learning_rate": 0.02}})
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 784)), rng.integers(0, 10, 200)
    with pytest.raises(TrainingDiverged, match=r"loss rose from .* to"):
        fit(build_network(config, rng), get_loss("mse"), build_optimizer(config), x, y,
            epochs=1, batch_size=20, rng=rng)


@pytest.mark.slow
def test_sigterm_on_a_terminal_shows_the_cursor_again(tmp_path, mnist_cache):
    import pty

    out, metrics = tmp_path / "w.npz", tmp_path / "m.jsonl"
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", str(config(tmp_path)), "--out", str(out),
         "--metrics", str(metrics), "--data-dir", str(mnist_cache)],
        stdin=secondary, stdout=secondary, stderr=secondary, env={**os.environ, "TERM": "xterm"})
    os.close(secondary)
    chunks = []
    try:
        deadline = time.monotonic() + 60
        while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
            assert time.monotonic() < deadline and process.poll() is None
            chunks.append(os.read(primary, 65536))
        process.send_signal(signal.SIGTERM)
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the other side closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(primary)
        process.wait(timeout=30)
    screen = b"".join(chunks)
    assert process.returncode == 143
    assert b"\x1b[?25l" in screen  # the progress bar hid the cursor ...
    assert screen.rindex(b"\x1b[?25h") > screen.rindex(b"\x1b[?25l")  # ... and it is back
    assert b"stopped by SIGTERM" in screen


def test_a_signal_ignored_at_start_stays_ignored_as_under_nohup():
    from nnctl.signals import stop_on_signals

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert callable(signal.getsignal(signal.SIGTERM))
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
