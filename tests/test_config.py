import textwrap

import pytest

from nnctl.config import load_config
from nnctl.errors import ConfigError

GOOD = """\
model:
  layers:
    - {units: 32, activation: relu}
    - {units: 10, activation: softmax}
training:
  epochs: 2
  learning_rate: 0.1
"""


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    return str(error.value).splitlines()


def test_a_good_config_gets_its_defaults(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.sizes == [784, 32, 10]
    assert config.training.batch_size == 64 and config.training.optimizer.name == "sgd"
    assert config.loss == "sparse_categorical_crossentropy" and config.output == "weights.npz"


def test_unknown_keys_get_a_suggestion_and_their_line(tmp_path):
    lines = problems(tmp_path, GOOD + "  learnig_rate: 0.1\n")
    assert lines == [f"{tmp_path / 'c.yaml'}:8: training.learnig_rate: unknown key; "
                     "did you mean 'learning_rate'?"]


@pytest.mark.parametrize("edit, expected", [
    (("epochs: 2", "epochs: two"), "training.epochs: expected a whole number, got str 'two'"),
    (("epochs: 2", "epochs: 0"), "training.epochs: must be between 1 and 100000, got 0"),
    (("learning_rate: 0.1", "learning_rate: 0"), "training.learning_rate: must be a finite number"),
    (("learning_rate: 0.1", "learning_rate: -1"), "training.learning_rate: must be a finite"),
    (("learning_rate: 0.1", "learning_rate: .nan"), "training.learning_rate: must be a finite"),
    (("learning_rate: 0.1", "learning_rate: .inf"), "training.learning_rate: must be a finite"),
    (("units: 32", "units: -3"), "model.layers[0].units: must be between 1 and 65536"),
    (("units: 32", "units: 1000000000"), "model.layers[0].units: must be between 1 and 65536"),
    (("units: 10", "units: 7"), "model.layers[1].units: the output layer needs 10 units"),
    (("activation: relu", "activation: rleu"), "did you mean 'relu'?"),
    (("activation: relu", "activation: softmax"), "softmax belongs to the output layer only"),
    (("epochs: 2", "epochs: 2\n  batch_size: 70000"), "training.batch_size: must be between"),
])
def test_each_bad_value_is_one_line_with_its_key_path(tmp_path, edit, expected):
    lines = problems(tmp_path, GOOD.replace(*edit, 1))
    assert len(lines) == 1
    assert expected in lines[0]


def test_input_must_be_784_and_the_loss_must_suit_the_output(tmp_path):
    text = GOOD.replace("model:\n", "model:\n  input: 100\n").replace(
        "activation: softmax", "activation: linear") + "loss: categorical_crossentropy\n"
    lines = problems(tmp_path, text)
    assert any("model.input: MNIST images have 784 pixels, got 100" in l for l in lines)
    assert any("loss: categorical_crossentropy cannot work with a linear output" in l
               for l in lines)


def test_unknown_loss_and_every_problem_at_once(tmp_path):
    lines = problems(tmp_path, GOOD + "loss: hinge\noutput: 3\n")
    assert len(lines) == 2
    assert "loss: unknown value 'hinge'" in lines[0]
    assert "output: expected a non-empty string" in lines[1]


@pytest.mark.parametrize("text, expected", [
    ("", "the config is empty"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("model: [\n", "invalid YAML"),
    ("model: {layers: 3}\n", "model.layers: expected a non-empty list"),
])
def test_malformed_documents(tmp_path, text, expected):
    assert expected in "\n".join(problems(tmp_path, text))


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},"
                     f"*{prev},*{prev},*{prev}]")
    assert "refused" in "\n".join(problems(tmp_path, "\n".join(lines) + "\n"))


def test_optimizer_shorthand_and_options(tmp_path):
    config = load_config(write(tmp_path, GOOD + "  optimizer: adam\n"))
    assert config.training.optimizer.name == "adam"
    lines = problems(tmp_path, GOOD + "  optimizer: {name: adam, momentum: 0.9}\n")
    assert "training.optimizer.momentum: is not an option of adam" in lines[0]


def test_overrides_replace_the_file_values(tmp_path):
    config = load_config(write(tmp_path, GOOD), {"training.epochs": 5, "training.seed": 3})
    assert config.training.epochs == 5 and config.training.seed == 3


def test_shipped_configs_validate():
    from pathlib import Path

    shipped = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert shipped
    for path in shipped:
        load_config(path)
