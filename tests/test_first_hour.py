"""What a new user meets first: help, messages, exit codes, file modes, resume refusals,
swapped arguments, bracketed paths. None of these tests needs MNIST."""

import json
import os
import stat
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from nnctl import experiment
from nnctl.cli import render
from nnctl.cli.app import app
from nnctl.cli.console import TrimmedLines
from nnctl.cli.hint import resume_command
from nnctl.config import load_config, validate
from nnctl.data.scaler import MinMaxScaler
from nnctl.errors import ConfigError, UsageError
from nnctl.weights import Checkpoint, load, save

runner = CliRunner()
LAYERS = [{"units": 8, "activation": "relu"}, {"units": 10, "activation": "softmax"}]


def run(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def weights_file(path, epochs_done=None, output="softmax", loss=None, **training):
    """A small weights file written without any data; with epochs_done, a resumable one."""
    raw = {"model": {"layers": [LAYERS[0], {"units": 10, "activation": output}]},
           "training": {"epochs": 3, **training}}
    if loss:
        raw["loss"] = loss
    config = validate(raw)
    network = experiment.build_network(config, np.random.default_rng(0))
    history = [{"epoch": e, "train_loss": 1.0, "train_accuracy": 0.5, "seconds": 1.0,
                "learning_rate": 0.1,
                "evaluations": {"validation": {"loss": 1.0, "accuracy": 0.5 - e / 100}}}
               for e in range(1, (epochs_done or 2) + 1)]
    state = None
    if epochs_done is not None:
        state = {"epochs_done": epochs_done, "rng": np.random.default_rng(0).bit_generator.state,
                 "optimizer_steps": 1}
    save(path, Checkpoint(network, MinMaxScaler(np.array(0.0), np.array(255.0)), config,
                          history, state))
    return path


def config_file(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def digit_png(path, light_background=False):
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 12:16] = 255
    Image.fromarray(255 - image if light_background else image).save(path)
    return path


# --- help ------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["gradcheck"],
                                     ["plot"], ["data"], ["data", "info"], ["data", "download"]])
def test_help_renders_without_placeholders_and_keeps_bracketed_text(command):
    result = run(*command, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    for placeholder in ("<bool>", "<path>", "<int>", "list[", "{config}", "{images}"):
        assert placeholder not in text, placeholder
    if command == ["train"]:
        assert "[default: the config's output]" in text
        assert "$NNCTL_DATA_DIR" in text and "[default: the config's data.dir" in text


# --- messages, exit codes ---------------------------------------------------------------------

def test_errors_from_options_name_the_option_and_sort_by_line(tmp_path):
    config = config_file(tmp_path / "c.yaml", """\
        model:
          layers:
            - {units: 10, activation: softmax}
        training:
          optimizer: adamw
          epochs: 0
        data: {validation: -1}
        """)
    result = run("train", config, "--learning-rate", "-0.1", "--batch-size", "0")
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[:2] == ["error: --batch-size: must be between 1 and 60000, got 0",
                         "error: --learning-rate: must be a finite number > 0, got -0.1"]
    numbers = [int(line.split(":")[2]) for line in lines[2:]]
    assert numbers == sorted(numbers) and len(numbers) == 3  # each file error has its line
    assert "c.yaml:5: training.optimizer.name: unknown value 'adamw'; did you mean 'adam'?" \
        in result.stderr
    assert "inf" not in result.stderr


def test_names_are_case_insensitive_with_a_did_you_mean():
    config = validate({"model": {"layers": [{"units": 8, "activation": "ReLU"},
                                            {"units": 10, "activation": "Softmax"}]},
                       "training": {"optimizer": "Adam"}})
    assert [l.activation for l in config.model.layers] == ["relu", "softmax"]
    assert config.training.optimizer.name == "adam"
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        validate({"model": {"layers": [{"units": 8, "activation": "ReLUU"}, LAYERS[1]]}})


def test_range_text_reads_as_a_range():
    with pytest.raises(ConfigError) as error:
        validate({"model": {"layers": LAYERS}, "training": {"learning_rate": 0}})
    assert "training.learning_rate: must be a finite number > 0, got 0" in str(error.value)


def test_a_download_says_where_it_goes_and_how_to_share_one_cache(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "t10k-images-idx3-ubyte.gz").write_bytes(b"not MNIST")
    monkeypatch.setenv("NNCTL_MNIST_MIRROR", str(mirror))
    monkeypatch.chdir(tmp_path)
    result = run("evaluate", weights_file(tmp_path / "w.npz"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"MNIST is not cached in {tmp_path / 'data' / 'mnist'}: "
                                    "downloading it")
    assert "set NNCTL_DATA_DIR to one absolute path" in result.stderr


def test_option_values_out_of_range_exit_2_naming_the_option(tmp_path):
    config = config_file(tmp_path / "c.yaml", "model: {layers: [{units: 10, activation: softmax}]}")
    for value in ("nan", "0", "-1"):
        result = run("gradcheck", config, "--threshold", value)
        assert result.exit_code == 2
        assert result.stderr.startswith("error: --threshold: must be a finite number > 0")


def test_swapped_arguments_are_recognised(tmp_path):
    weights = weights_file(tmp_path / "w.npz")
    image = digit_png(tmp_path / "d.png")
    config = config_file(tmp_path / "c.yaml", "model: {layers: [{units: 10, activation: softmax}]}")
    cases = [
        (("train", weights), f"{weights}: is a weights file, not a YAML config; did you mean: "
                             f"nnctl evaluate {weights}, or nnctl train CONFIG --resume {weights}"),
        (("gradcheck", weights), "is a weights file, not a YAML config"),
        (("predict", weights, image), f"{weights}: is a weights file, not an image; did you "
                                      f"mean: nnctl predict {image} --weights {weights}"),
        (("evaluate", config), f"{config}: is a YAML config, not a weights file; train it "
                               f"first: nnctl train {config}"),
        (("predict", image, "--weights", image), f"{image}: is an image, not a weights file"),
        (("train", config, "--resume", config), f"{config}: is a YAML config, not a weights "
                                                f"file; train it first: nnctl train {config}, "
                                                "then nnctl train CONFIG --resume WEIGHTS"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_predict_errors_and_warnings_go_to_stderr(tmp_path):
    weights = weights_file(tmp_path / "w.npz")
    good = digit_png(tmp_path / "good.png")
    light = digit_png(tmp_path / "light.png", light_background=True)
    for mode in ([], ["--json"]):
        result = run("predict", tmp_path / "none.png", good, "--weights", weights, *mode)
        assert result.exit_code == 2
        assert "good.png" in result.stdout
        assert result.stderr == f"error: {tmp_path / 'none.png'}: no such image file\n"
    assert "none.png" not in run("predict", tmp_path / "none.png", good, "--weights",
                                 weights).stdout
    result = run("predict", light, "--raw", "--weights", weights)
    assert result.exit_code == 0
    assert result.stderr.startswith(f"warning: {light}: --raw takes the image as it is, but "
                                    "its border is light")
    assert run("predict", good, "--raw", "--weights", weights).stderr == ""


def test_outputs_other_than_softmax_are_scores_not_probabilities(tmp_path):
    weights = weights_file(tmp_path / "w.npz", output="sigmoid", loss="mse")
    image = digit_png(tmp_path / "d.png")
    listed = json.loads(run("predict", image, "--weights", weights, "--json").stdout)
    assert "scores" in listed[0] and "probabilities" not in listed[0]
    text = run("predict", image, "--weights", weights).stdout
    assert "(scores)" in text and "%" not in text
    softmax = weights_file(tmp_path / "s.npz")
    listed = json.loads(run("predict", image, "--weights", softmax, "--json").stdout)
    assert abs(sum(listed[0]["probabilities"]) - 1) < 1e-4


def test_plot_refuses_a_format_it_cannot_write(tmp_path):
    from nnctl.plot import check_format

    with pytest.raises(UsageError, match=r"curves.txt: cannot draw to the format \.txt; use one "
                                         r"of \.pdf, \.png"):
        check_format(Path("curves.txt"), {"png": "PNG", "pdf": "PDF"})
    with pytest.raises(UsageError, match="a name without an extension"):
        check_format(Path("curves"), {"png": "PNG"})
    check_format(Path("c.PNG"), {"png": "PNG"})
    pytest.importorskip("matplotlib")
    result = run("plot", weights_file(tmp_path / "w.npz"), "-o", tmp_path / "curves.txt")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output and not (tmp_path / "curves.txt").exists()


def test_bracketed_paths_print_as_typed(tmp_path):
    folder = tmp_path / "dd[x]"
    result = run("data", "info", "--data-dir", folder, env={"COLUMNS": "400"})
    assert f"MNIST cache in {folder}" in result.stdout
    weights = weights_file(tmp_path / "w[best].npz")
    image = digit_png(tmp_path / "img[1].png")
    result = run("predict", image, "--weights", weights)
    assert result.exit_code == 0 and f"{image}: " in result.stdout
    result = run("evaluate", tmp_path / "w[2].npz")
    assert f"{tmp_path / 'w[2].npz'}: no such weights file" in result.stderr
    config = config_file(tmp_path / "c[1].yaml", "model: {layers: [{units: 10, activation: x}]}")
    assert f"{config}:1: model.layers[0].activation" in run("train", config).stderr
    assert f"{config}" in run("gradcheck", config).stderr
    pytest.importorskip("matplotlib")
    result = run("plot", weights, "-o", tmp_path / "c[1].png")
    assert result.exit_code == 0 and f"{tmp_path / 'c[1].png'}" in result.stdout


def test_piped_output_has_no_trailing_spaces(tmp_path):
    result = run("data", "info", "--data-dir", tmp_path, env={"COLUMNS": "150"})
    assert result.stdout and all(line == line.rstrip() for line in result.stdout.splitlines())
    sink = []
    stream = TrimmedLines(type("S", (), {"write": lambda self, t: sink.append(t),
                                          "flush": lambda self: None})())
    stream.write("a  \nb")
    stream.write("  \n")
    assert "".join(sink) == "a\nb\n"


# --- resume -----------------------------------------------------------------------------------

def test_resume_refuses_another_run_naming_the_setting(tmp_path):
    weights = weights_file(tmp_path / "w.npz", epochs_done=2)
    config = config_file(tmp_path / "c.yaml", f"""\
        model: {{layers: {json.dumps(LAYERS)}}}
        training: {{epochs: 3}}
        """)
    result = run("train", config, "--resume", weights, "--epochs", 5)
    assert result.exit_code == 2
    assert result.stderr == (f"error: {weights}: cannot resume: training.epochs was 3 in that "
                             "run and is 5 now (from --epochs); a resumed run continues the very "
                             "same run\n")
    changed = config_file(tmp_path / "d.yaml", f"""\
        model: {{layers: {json.dumps(LAYERS)}}}
        training: {{epochs: 3, schedule: cosine}}
        """)
    result = run("train", changed, "--resume", weights)
    assert result.exit_code == 2 and "training.schedule.name was \"constant\"" in result.stderr
    done = weights_file(tmp_path / "done.npz", epochs_done=3)
    result = run("train", config, "--resume", done)
    assert result.exit_code == 2
    assert "nothing to resume: all 3 epochs of this run are done" in result.stderr


def test_an_early_stopped_file_says_why_it_cannot_resume(tmp_path):
    weights = weights_file(tmp_path / "w.npz")
    checkpoint = load(weights)
    checkpoint.config.training.early_stopping.patience = 2
    with pytest.raises(UsageError, match="early stopping ended this run after epoch 2 and the "
                                         "file holds the weights of its best epoch, 1,"):
        experiment.check_resumable(checkpoint, checkpoint.config, "w.npz")
    resumable = load(weights_file(tmp_path / "r.npz", epochs_done=1))
    assert experiment.check_resumable(resumable, resumable.config) == 2


def test_the_continue_hint_carries_every_option_quoted():
    hint = resume_command("c.yaml", "w[best].npz", {
        "--epochs": 5, "--batch-size": 32, "--learning-rate": 0.05, "--seed": None,
        "--data-dir": Path("my data"), "--metrics": Path("m.jsonl"), "--quiet": True})
    assert hint == ("nnctl train c.yaml --resume 'w[best].npz' --epochs 5 --batch-size 32 "
                    "--learning-rate 0.05 --data-dir 'my data' --metrics m.jsonl --quiet")


# --- what training and evaluation print -------------------------------------------------------

def history(validation):
    rows = []
    for epoch, (test, val) in enumerate([(0.97, 0.96), (0.99, 0.95), (0.98, 0.94)], 1):
        evaluations = {"test": {"loss": 0.1, "accuracy": test, "samples": 10}}
        if validation:
            evaluations["validation"] = {"loss": 0.1, "accuracy": val, "samples": 10}
        rows.append({"epoch": epoch, "train_loss": 0.2, "train_accuracy": 0.9,
                     "evaluations": evaluations})
    return rows


def test_there_is_no_best_epoch_without_a_validation_split(tmp_path):
    assert experiment.best_epoch(history(False)) == (3, "")
    assert experiment.best_epoch(history(True)) == (1, "validation")
    console = Console(record=True, width=100)
    render.training_summary(console, experiment.TrainingResult(
        history(False), 3, "", 1.0, Path("w[1].npz")))
    text = console.export_text()
    assert "best epoch" not in text and "test accuracy of the saved weights 98.00%" in text
    assert "weights saved to w[1].npz" in text


def test_the_epoch_header_fits_60_columns_and_one_epoch_is_singular():
    from nnctl.trainer import EpochReport, Evaluation

    report = EpochReport(1, 0.1234, 0.9876, 2.5, 0.1, {"validation": Evaluation(0.1, 1.0, 5),
                                                      "test": Evaluation(0.2, 0.98, 5)})
    for width in (60, 100):
        console = Console(record=True, width=width)
        console.print(render.epoch_row(report, header=True, width=width))
        text = console.export_text()
        assert "…" not in text and "100.00%" in text
        assert all(word in text for word in ("train", "loss", "val", "test", "seconds"))
    console = Console(record=True, width=100)
    config = validate({"model": {"layers": LAYERS}, "training": {"epochs": 1}})
    render.model_summary(console, experiment.build_network(config, np.random.default_rng(0)),
                         config)
    assert ", 1 epoch, " in console.export_text()


def test_evaluation_shows_f1_as_a_percentage_and_average_rows():
    from nnctl.metrics import averages, confusion_matrix, per_class

    labels = np.array([0, 0, 0, 1, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 0])
    figures = per_class(confusion_matrix(labels, predicted, 3))
    means = averages(figures)
    f1 = [0.6666666666666666, 0.6666666666666666, 0.6666666666666666]  # 2PR/(P+R) per class
    assert [f.f1 for f in figures] == pytest.approx(f1)
    assert means["macro"]["precision"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert means["weighted"]["recall"] == pytest.approx((3 * 2 / 3 + 1 * 1 + 2 * 1 / 2) / 6)
    report = experiment.EvaluationReport("test", 4 / 6, 0.5, 6,
                                         confusion_matrix(labels, predicted, 3), figures)
    console = Console(record=True, width=100)
    render.evaluation(console, report)
    text = console.export_text()
    assert "66.67%" in text and "0.6667" not in text
    assert "macro avg" in text and "weighted avg" in text
    assert report.as_dict()["averages"]["macro"]["support"] == 6


def test_split_validation_needs_a_validation_split(tmp_path):
    result = run("evaluate", weights_file(tmp_path / "w.npz"), "--split", "validation",
                 "--data-dir", tmp_path / "none")
    assert result.exit_code == 2
    assert "trained without a validation split" in result.stderr
    assert not (tmp_path / "none").exists()


def test_metrics_lines_say_which_run_they_belong_to(tmp_path):
    from nnctl.cli.app import _metrics_log
    from nnctl.trainer import EpochReport

    path = tmp_path / "m.jsonl"
    for _ in range(2):
        with _metrics_log(path) as log:
            log(EpochReport(1, 0.1, 0.9, 1.0, 0.1))
    runs = [json.loads(line)["run"] for line in path.read_text().splitlines()]
    assert len(runs) == 2 and runs[0] != runs[1]


# --- files ------------------------------------------------------------------------------------

@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)
    previous = os.umask(0o022)
    yield set_mask
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_take_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path, umask):
    from nnctl.data.download import fetch
    from nnctl.data.mnist import FILES

    path = weights_file(tmp_path / "w.npz")
    assert mode(path) == 0o644
    path.chmod(0o600)
    weights_file(path)
    assert mode(path) == 0o600
    umask(0o077)
    assert mode(weights_file(tmp_path / "private.npz")) == 0o600
    umask(0o022)
    spec = FILES["train_labels"]
    source = tmp_path / "mirror"
    source.mkdir()
    labels = np.zeros(60000, np.uint8)
    content = bytes([0, 0, 8, 1]) + (60000).to_bytes(4, "big") + labels.tobytes()
    (source / spec.name).write_bytes(content)
    import hashlib

    dest = tmp_path / "cache" / spec.name
    fetch(spec.archive, hashlib.sha256(content).hexdigest(), dest, [str(source)])
    assert mode(dest) == 0o644


@pytest.mark.slow
def test_training_with_bracketed_paths_prints_them_and_writes_0644(tmp_path, mnist_cache, umask):
    data = tmp_path / "dd[x]"
    data.symlink_to(mnist_cache, target_is_directory=True)
    config = config_file(tmp_path / "c[1].yaml", f"""\
        data: {{validation: 55000}}
        model: {{layers: {json.dumps(LAYERS)}}}
        training: {{epochs: 1, batch_size: 100}}
        """)
    out = tmp_path / "w[best].npz"
    result = run("train", config, "--out", out, "--data-dir", data, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # cached: no download notice
    assert ", 1 epoch, " in result.stdout and f"weights saved to {out}" in result.stdout
    assert "best epoch 1 (validation accuracy" in result.stdout
    assert all(line == line.rstrip() for line in result.stdout.splitlines())
    assert mode(out) == 0o644
