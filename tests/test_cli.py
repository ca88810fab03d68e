"""The commands through Typer's CliRunner: help, errors and exit codes."""

import textwrap

from typer.testing import CliRunner

from nnctl import __version__
from nnctl.cli.app import app

runner = CliRunner()


def run(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def config_file(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_help_lists_the_commands_and_version_prints():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "evaluate", "predict", "gradcheck", "data"):
        assert command in result.output
    assert run("--version").output.strip() == f"nnctl {__version__}"


def test_a_bad_config_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path):
    config = config_file(tmp_path, "model:\n  layers:\n    - {units: 10, activation: sofmax}\n")
    result = run("train", config)
    assert result.exit_code == 2
    assert "did you mean 'softmax'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "weights.npz").exists()


def test_a_missing_config_and_weights_file_exit_2(tmp_path):
    assert run("train", tmp_path / "none.yaml").exit_code == 2
    result = run("evaluate", tmp_path / "none.npz")
    assert result.exit_code == 2 and "no such weights file" in result.output
    result = run("predict", tmp_path / "x.png", "--weights", tmp_path / "none.npz")
    assert result.exit_code == 2


def test_an_override_out_of_range_names_the_option_not_the_config(tmp_path):
    config = config_file(tmp_path, """\
        model:
          layers:
            - {units: 10, activation: softmax}
        """)
    result = run("train", config, "--learning-rate", "-1")
    assert result.exit_code == 2
    assert result.output == "error: --learning-rate: must be a finite number > 0, got -1\n"


def test_data_info_on_an_empty_cache_says_what_to_do(tmp_path):
    result = run("data", "info", "--data-dir", tmp_path)
    assert result.exit_code == 1
    assert "missing" in result.output and "nnctl data download" in result.output


def test_download_with_no_mirror_reachable_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCTL_MNIST_MIRROR", str(tmp_path / "no-such-folder"))
    result = run("data", "download", "--data-dir", tmp_path / "data")
    assert result.exit_code == 1
    assert "could not get train-images-idx3-ubyte.gz" in result.output
    assert "NNCTL_MNIST_MIRROR" in result.output and "Traceback" not in result.output


def test_gradcheck_passes_on_random_inputs_without_mnist(tmp_path):
    config = config_file(tmp_path, """\
        model:
          layers:
            - {units: 6, activation: gelu}
            - {units: 5, activation: elu}
            - {units: 10, activation: softmax}
        loss: categorical_crossentropy
        """)
    result = run("gradcheck", config, "--data-dir", tmp_path / "empty", "--entries", "10")
    assert result.exit_code == 0, result.output
    assert "random inputs" in result.output and "W2" in result.output
    assert not (tmp_path / "empty").exists()  # a check downloads nothing
