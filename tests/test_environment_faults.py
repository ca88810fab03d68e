"""Ordinary environment problems before any training: paths in configs, device files, a
missing output directory, a network too large for the memory, kinks in gradcheck."""

import os
import resource
import stat
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import load_config, validate
from nnctl.errors import ConfigError
from nnctl.memory import OutOfMemory, check_memory, training_estimate

runner = CliRunner()
LAYERS = """\
model:
  layers:
    - {units: 8, activation: relu}
    - {units: 10, activation: softmax}
"""


def config_file(tmp_path, extra="", layers=LAYERS):
    path = tmp_path / "c.yaml"
    path.write_text(layers + extra)
    return path


@pytest.mark.parametrize("extra, line", [("output: ~\n", 5), ("output:\n", 5),
                                         ("output: ''\n", 5)])
def test_an_empty_output_is_refused_with_its_line(tmp_path, extra, line):
    with pytest.raises(ConfigError, match=f"c.yaml:{line}: output: is empty"):
        load_config(config_file(tmp_path, extra))


def test_home_and_variables_in_paths_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
    config = load_config(config_file(tmp_path, "data: {dir: ~/mnist}\noutput: $RUNS/w.npz\n"))
    assert config.data.dir == str(tmp_path / "home" / "mnist")
    assert config.output == str(tmp_path / "runs" / "w.npz")


def test_an_unset_variable_in_a_path_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("NNCTL_NO_SUCH_VARIABLE", raising=False)
    with pytest.raises(ConfigError, match=r"c.yaml:6: output: uses \$NNCTL_NO_SUCH_VARIABLE"):
        load_config(config_file(tmp_path, "data: {}\noutput: ${NNCTL_NO_SUCH_VARIABLE}/w.npz\n"))


def test_a_null_data_dir_still_means_the_default(tmp_path):
    assert load_config(config_file(tmp_path, "data: {dir: null}\n")).data.dir is None


def run(*args, timeout=60, **kwargs):
    return subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], text=True,
                          capture_output=True, timeout=timeout, **kwargs)


@pytest.mark.parametrize("command", [["train", "/dev/zero"], ["evaluate", "/dev/zero"],
                                     ["train", "CONFIG", "--resume", "/dev/zero"]])
def test_device_files_are_refused_without_reading_them_through(tmp_path, command):
    command = [str(config_file(tmp_path)) if a == "CONFIG" else a for a in command]
    done = run(*command, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "/dev/zero" in done.stderr


def offline(monkeypatch, tmp_path):
    """No mirror delivers anything: any test reaching the download fails there."""
    monkeypatch.setenv("NNCTL_MNIST_MIRROR", str(tmp_path / "no-mirror"))
    monkeypatch.setenv("NNCTL_DATA_DIR", str(tmp_path / "empty-data"))


def test_a_device_or_pipe_is_never_replaced_by_the_weights(tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path)
    pipe = tmp_path / "pipe"  # like /dev/null, not a regular file; harmless if replaced
    os.mkfifo(pipe)
    result = runner.invoke(app, ["train", str(config_file(tmp_path)), "--out", str(pipe)])
    assert result.exit_code == 2 and "not a regular file" in result.output
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_a_missing_output_directory_is_reported_before_the_download(tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path)
    out = tmp_path / "missing" / "w.npz"
    result = runner.invoke(app, ["train", str(config_file(tmp_path)), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output and "could not get" not in result.output


def test_a_name_too_long_for_the_file_system_is_refused_at_once(tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path)
    out = tmp_path / ("w" * 252 + ".npz")
    result = runner.invoke(app, ["train", str(config_file(tmp_path)), "--out", str(out)])
    assert result.exit_code == 2 and "longer than the 255 bytes" in result.output


def test_a_legal_252_byte_name_is_saved_to(tmp_path):
    from nnctl.data.scaler import MinMaxScaler
    from nnctl.experiment import build_network
    from nnctl.weights import Checkpoint, load, save

    config = validate({"model": {"layers": [{"units": 10, "activation": "softmax"}]}})
    checkpoint = Checkpoint(build_network(config, np.random.default_rng(0)),
                            MinMaxScaler(np.array(0.0), np.array(255.0)), config)
    out = tmp_path / ("w" * 248 + ".npz")
    save(out, checkpoint)
    assert load(out).config.sizes == [784, 10] and os.listdir(tmp_path) == [out.name]


HUGE = """\
model:
  layers:
    - {units: 65536, activation: relu}
    - {units: 10, activation: softmax}
"""


def test_the_estimate_counts_the_evaluation_matrices():
    estimate = training_estimate(validate({"model": {"layers": [
        {"units": 65536, "activation": "relu"}, {"units": 10, "activation": "softmax"}]}}))
    # z, a and delta: 3 x (2 x 64 + 4096 + 1808 rows) x 65546 units x 4 bytes = 4.4 GiB
    assert 4.3 < estimate.workspaces / 2**30 < 4.5
    assert 0.35 < estimate.parameters / 2**30 < 0.45  # 51.5 M parameters, values and gradients


def test_a_network_too_large_for_the_memory_is_refused_with_the_estimate(tmp_path):
    config = load_config(config_file(tmp_path, layers=HUGE))
    with pytest.raises(OutOfMemory, match=r"needs about 4\.\d GiB .* more than the 1\.0 GiB"):
        check_memory(config, available=2**30)


def test_under_a_3_gib_limit_784_65536_10_ends_in_one_line(tmp_path):
    """The real thing: an address-space limit, the real process, no traceback."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    env = {**os.environ, "NNCTL_MNIST_MIRROR": str(tmp_path / "none"),
           "NNCTL_DATA_DIR": str(tmp_path / "d"), "OPENBLAS_NUM_THREADS": "1"}
    done = run("train", config_file(tmp_path, layers=HUGE), "--out", tmp_path / "w.npz",
               preexec_fn=limit, env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "GiB available" in done.stderr


def test_a_memory_error_anywhere_is_one_line(tmp_path, monkeypatch):
    import nnctl.experiment

    def allocate(*args, **kwargs):
        raise MemoryError("Unable to allocate 16.0 GiB for an array")

    monkeypatch.setattr(nnctl.experiment, "train", allocate)
    result = runner.invoke(app, ["train", str(config_file(tmp_path))])
    assert result.exit_code == 1
    assert result.output.startswith("error: out of memory (Unable to allocate 16.0 GiB")


def test_gradcheck_skips_entries_at_a_relu_kink():
    from nnctl.experiment import build_network
    from nnctl.gradcheck import check_gradients
    from nnctl.losses import get_loss

    config = validate({"model": {"layers": [{"units": 6, "activation": "relu"},
                                            {"units": 10, "activation": "softmax"}]},
                       "training": {"dtype": "float64"}})
    network = build_network(config, np.random.default_rng(0))
    x = np.random.default_rng(1).random((4, 784))
    x[0] = 0.0  # with zero biases, every hidden z of sample 0 is exactly 0: a kink
    checks = check_gradients(network, get_loss("sparse_categorical_crossentropy"), x,
                             np.array([1, 2, 3, 4]))
    assert max(c.relative_error for c in checks) < 1e-6
    b0 = next(c for c in checks if c.name == "b0")
    assert b0.checked == 0  # every bias moves sample 0 across the kink: none can be checked
    assert next(c for c in checks if c.name == "W0").checked == 6 * 784
