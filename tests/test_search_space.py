"""The search: section: parsing, validation with FILE:LINE errors, and sampled values mapped
into configs that validate. No Optuna needed."""

import sys
import textwrap

import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import load_config, validate
from nnctl.errors import ConfigError
from nnctl.search.space import Dimension, apply, check_space, load_space, split_key

BASE = """\
model:
  layers:
    - {units: 256, activation: relu}
    - {units: 10, activation: softmax}
data: {validation: 5000}
training:
  optimizer: sgd
  schedule: cosine
"""


def write(tmp_path, search, base=BASE):
    path = tmp_path / "search.yaml"
    path.write_text(base + "search:\n" + textwrap.indent(textwrap.dedent(search), "  "))
    return path


def errors_of(tmp_path, search):
    path = write(tmp_path, search)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).splitlines()


def test_the_documented_example_parses_into_five_dimensions(tmp_path):
    path = write(tmp_path, """\
        training.learning_rate: {log_uniform: [0.01, 1.0]}
        training.optimizer.momentum: {uniform: [0.8, 0.99]}
        model.layers.0.units: {choice: [128, 256, 512, 1024]}
        model.layers.0.dropout: {uniform: [0.0, 0.5]}
        training.batch_size: {int: [32, 256], log: true}
        """)
    base, dims = load_space(path)
    assert "search" not in base
    assert [(d.key, d.kind, d.log) for d in dims] == [
        ("training.learning_rate", "float", True), ("training.optimizer.momentum", "float", False),
        ("model.layers.0.units", "choice", False), ("model.layers.0.dropout", "float", False),
        ("training.batch_size", "int", True)]
    assert dims[2].choices == (128, 256, 512, 1024)
    assert dims[4].path == ("training", "batch_size") and (dims[4].low, dims[4].high) == (32, 256)


def test_key_paths_take_dots_or_brackets():
    assert split_key("model.layers.0.units") == ("model", "layers", 0, "units")
    assert split_key("model.layers[1].dropout") == ("model", "layers", 1, "dropout")
    assert split_key("training..epochs") is None


@pytest.mark.parametrize("line, expected", [
    ("training.learningrate: {log_uniform: [0.01, 1.0]}",
     "no key training.learningrate; did you mean 'learning_rate'?"),
    ("training.optimizer.momentum: {uniform: [0.99, 0.8]}", "an empty range: low 0.99 is above high 0.8"),
    ("training.epochs: {int: [5, 5]}", "an empty range [5, 5]"),
    ("training.learning_rate: {log_uniform: [0.0, 1.0]}", "a log range needs low > 0"),
    ("training.batch_size: {int: [-4, 64], log: true}", "a log range needs low > 0"),
    ("model.layers.2.units: {choice: [64, 128]}", "model.layers has 2 entries, there is no entry 2"),
    ("model.layers.units: {choice: [64, 128]}", "model.layers is a list"),
    ("training.optimizer: {choice: [sgd, adam]}", "training.optimizer is a section"),
    ("model.layers.0.dropout: {uniform: [0.0, 1.5]}",
     "the value 1.5 makes an invalid config: model.layers[0].dropout: must be"),
    ("model.layers.0.activation: {choice: [relu, softmax]}",
     "the value 'softmax' makes an invalid config: model.layers[0].activation: softmax belongs"),
    ("model.layers.0.units: {choise: [64, 128]}", "unknown distribution 'choise'; did you mean 'choice'?"),
    ("model.layers.0.units: {int: [2.5, 8]}", "expected [low, high] as whole numbers"),
    ("model.layers.0.units: {choice: [64, 64]}", "64 is listed twice"),
    ("training.learning_rate: 0.1", "expected a distribution such as"),
    ("training.learning_rate: {uniform: [0.01, 0.1], log: true, step: 0.01}", "a log range cannot have a step"),
    ("training.learning_rate: {log_uniform: [0.01, 0.1], log: false}", "log_uniform is a log range"),
])
def test_a_bad_search_key_is_one_line_with_file_line_and_key(tmp_path, line, expected):
    lines = errors_of(tmp_path, line + "\n")
    assert len(lines) == 1, lines
    key = line.split(":")[0]
    assert lines[0].startswith(f"{tmp_path / 'search.yaml'}:10: search.{key}: "), lines[0]
    assert expected in lines[0]


def test_every_problem_is_reported_at_once_and_the_same_key_twice_is_refused(tmp_path):
    lines = errors_of(tmp_path, """\
        model.layers.0.units: {choice: [64, 128]}
        model.layers[0].units: {int: [16, 64]}
        training.momentum: {uniform: [0.1, 0.2]}
        """)
    assert len(lines) == 2
    assert ":11: search.model.layers[0].units: model.layers[0].units is searched twice" in lines[0]
    assert ":12: search.training.momentum: no key training.momentum" in lines[1]


def test_nnctl_train_ignores_search_and_tune_refuses_a_bad_one_with_exit_2(tmp_path):
    good = write(tmp_path, "training.learning_rate: {log_uniform: [0.01, 1.0]}\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text(BASE)
    assert load_config(good) == load_config(plain)
    bad = write(tmp_path, "training.learning_rate: {log_uniform: [0.0, 1.0]}\n")
    for command in ("train", "tune"):
        result = CliRunner().invoke(app, [command, str(bad)])
        assert result.exit_code == 2
        assert result.output.startswith(f"error: {bad}:10: search.training.learning_rate: a log")
        assert "Traceback" not in result.output


def test_tune_without_optuna_says_what_to_install_and_exits_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    path = write(tmp_path, "training.learning_rate: {log_uniform: [0.01, 1.0]}\n")
    result = CliRunner().invoke(app, ["tune", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: nnctl tune needs Optuna; install it with: ")
    assert result.output.endswith(" -m pip install 'optuna>=4.0' 'threadpoolctl>=3.1'\n")


def test_tune_needs_a_search_section_and_validation_images(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text(BASE)
    result = CliRunner().invoke(app, ["tune", str(plain)])
    assert result.exit_code == 2 and "no search section to tune" in result.output
    path = write(tmp_path, "training.learning_rate: {log_uniform: [0.01, 1.0]}\n",
                 base=BASE.replace("data: {validation: 5000}\n", ""))
    result = CliRunner().invoke(app, ["tune", str(path)])
    assert result.exit_code == 2 and "data.validation: a search needs validation images" in result.output


def test_sampled_values_land_on_their_keys_and_the_base_is_untouched(tmp_path):
    path = write(tmp_path, """\
        training.optimizer.momentum: {uniform: [0.8, 0.99]}
        training.schedule.warmup: {int: [0, 3]}
        model.layers.0.units: {choice: [128, 512]}
        loss: {choice: [mse, sparse_categorical_crossentropy]}
        """)
    base, dims = load_space(path)
    raw = apply(base, dims, {"training.optimizer.momentum": 0.95, "training.schedule.warmup": 2,
                             "model.layers.0.units": 512, "loss": "mse"})
    assert base["training"]["optimizer"] == "sgd"  # not changed in place
    config = validate(raw)
    assert config.training.optimizer.name == "sgd"  # the bare name became a section
    assert config.training.optimizer.momentum == 0.95
    assert config.training.schedule.name == "cosine" and config.training.schedule.warmup == 2
    assert config.model.layers[0].units == 512 and config.model.layers[1].units == 10
    assert config.loss == "mse"


@settings(max_examples=60, deadline=None)
@given(low=st.floats(1e-4, 0.4), width=st.floats(1e-3, 0.5), at=st.floats(0, 1), log=st.booleans())
def test_any_value_inside_a_valid_range_makes_a_valid_config(low, width, at, log):
    base = {"model": {"layers": [{"units": 32, "activation": "relu"},
                                 {"units": 10, "activation": "softmax"}]}}
    raw_space = {"model.layers.0.dropout": {"log_uniform" if log else "uniform": [low, low + width]}}
    problems = []
    dims = check_space(raw_space, base, lambda where, message: problems.append(message))
    high = low + width
    if high >= 1.0:  # dropout must stay below 1: the upper end is refused up front
        assert problems and "makes an invalid config" in problems[0]
        return
    assert not problems and len(dims) == 1
    value = low + at * width
    config = validate(apply(base, dims, {"model.layers.0.dropout": value}))
    assert config.model.layers[0].dropout == pytest.approx(value)


def test_a_dimension_describes_itself():
    assert Dimension("k", ("k",), "int", 32, 256, log=True).describe() == "log int in [32, 256]"
    assert Dimension("k", ("k",), "choice", choices=(1, 2)).describe() == "one of 1, 2"
