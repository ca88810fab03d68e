"""Datasets beyond MNIST: the registry, a folder of the user's own IDX files, class names in
the weights file, evaluate and predict by name, Fashion-MNIST's photo preparation."""

import gzip
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import load_config, validate
from nnctl.data.datasets import DATASETS, FASHION_MNIST, MNIST, get_dataset
from nnctl.data.folder import describe_folder, load_folder_split
from nnctl.data.idx import encode_idx
from nnctl.data.scaler import MinMaxScaler
from nnctl.errors import ConfigError, DataError, UsageError
from nnctl.experiment import build_network
from nnctl.weights import Checkpoint, class_names, load, save

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def write_folder(folder, train=60, test=20, shape=(6, 5), classes=3, names=None, gz=True,
                 rng=None):
    """A small IDX dataset: images whose class is written in their brightness."""
    rng = rng or np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    names = names or {"train_images": "train-images", "train_labels": "train-labels",
                      "test_images": "test-images", "test_labels": "test-labels"}
    for split, count in (("train", train), ("test", test)):
        labels = (np.arange(count) % classes).astype(np.uint8)
        images = (labels[:, None, None] * (200 // max(1, classes - 1))
                  + rng.integers(0, 40, (count, *shape))).astype(np.uint8)
        for role, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
            content = encode_idx(array)
            name = names[role] + (".gz" if gz else "")
            (folder / name).write_bytes(gzip.compress(content) if gz else content)
    return folder


def config_text(path, units=3, pixels=30, extra=""):
    return textwrap.dedent(f"""\
        data: {{dataset: idx, path: {path}{extra}}}
        model:
          input: {pixels}
          layers:
            - {{units: 16, activation: relu}}
            - {{units: {units}, activation: softmax}}
        training: {{epochs: 3, batch_size: 10, learning_rate: 0.1}}
        """)


def problems(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return str(error.value).splitlines()


# --- the registry ---------------------------------------------------------------------------

def test_fashion_mnist_is_described_as_its_authors_publish_it():
    assert get_dataset("fashion-mnist") is FASHION_MNIST
    assert FASHION_MNIST.classes[9] == "Ankle boot" and FASHION_MNIST.num_classes == 10
    assert FASHION_MNIST.files["train_images"].sha256.startswith("c59f468a")
    assert FASHION_MNIST.files["test_labels"].shape == (10000,)
    assert FASHION_MNIST.mirror_env == "NNCTL_FASHION_MNIST_MIRROR"
    assert "zalandoresearch/fashion-mnist" in FASHION_MNIST.mirrors[1]
    assert MNIST.classes == tuple("0123456789")
    with pytest.raises(UsageError, match="unknown dataset 'kmnist'"):
        get_dataset("kmnist")


def test_each_dataset_has_its_own_mirror_variable(monkeypatch):
    monkeypatch.setenv("NNCTL_FASHION_MNIST_MIRROR", "/srv/fashion")
    monkeypatch.delenv("NNCTL_MNIST_MIRROR", raising=False)
    assert FASHION_MNIST.sources() == ["/srv/fashion"]
    assert MNIST.sources() == list(MNIST.mirrors)


# --- a folder of the user's IDX files -------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("style", ["plain", "canonical", "prefixed"])
def test_a_folder_is_found_by_either_naming_gzipped_or_not(tmp_path, gz, style):
    canonical = {"train_images": "train-images-idx3-ubyte",
                 "train_labels": "train-labels-idx1-ubyte",
                 "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    names = {"plain": None, "canonical": canonical,
             "prefixed": {k: "emnist-x-" + v for k, v in canonical.items()}}[style]
    folder = write_folder(tmp_path / "d", names=names, gz=gz)
    dataset = describe_folder(folder)
    assert dataset.image_shape == (6, 5) and dataset.classes == ("0", "1", "2")
    images, labels = load_folder_split(dataset, "test")
    assert images.shape == (20, 30) and images.dtype == np.uint8
    assert labels.tolist() == [i % 3 for i in range(20)]


def test_class_names_come_from_the_config_and_must_cover_the_labels(tmp_path):
    folder = write_folder(tmp_path / "d")
    assert describe_folder(folder, ["a", "b", "c", "d"]).num_classes == 4
    with pytest.raises(DataError, match=r"train-labels.gz: label 2 is outside the 2 classes"):
        describe_folder(folder, ["a", "b"])


def corrupt(folder, name, content):
    (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "test-labels.gz").unlink(), r"no test labels \(expected t10k-labels"),
    (lambda f: corrupt(f, "train-images", b""), r"could each be the training images; keep one"),
    (lambda f: corrupt(f, "test-labels.gz", gzip.compress(encode_idx(np.zeros(7, np.uint8)))),
     r"test-labels.gz: 7 labels for 20 images"),
    (lambda f: corrupt(f, "test-images.gz", gzip.compress(encode_idx(np.zeros((20, 5, 6),
                                                                             np.uint8)))),
     r"training images are 5x6, test images 6x5"),
    (lambda f: corrupt(f, "train-images.gz", gzip.compress(encode_idx(np.zeros((60, 6, 5),
                                                                              np.float32)))),
     r"images should be unsigned bytes"),
    (lambda f: corrupt(f, "train-images.gz", gzip.compress(encode_idx(np.zeros((60, 30),
                                                                              np.uint8)))),
     r"images should have 3 dimensions"),
    (lambda f: corrupt(f, "train-labels.gz", b"\x1f\x8b\x08junk"), r"corrupt gzip data"),
    (lambda f: corrupt(f, "train-labels.gz", gzip.compress(b"\x08\x08\x01\x00")),
     r"not an IDX file"),
    (lambda f: [corrupt(f, f"{split}-labels.gz", gzip.compress(encode_idx(np.zeros(n, np.uint8))))
                for split, n in (("train", 60), ("test", 20))], r"every label is 0"),
], ids=["missing", "ambiguous", "counts", "sizes", "dtype", "dimensions", "gzip", "magic",
        "one class"])
def test_a_broken_folder_is_named_in_one_line(tmp_path, damage, message):
    folder = write_folder(tmp_path / "d")
    damage(folder)
    with pytest.raises(DataError, match=message) as error:
        describe_folder(folder)
    assert "\n" not in str(error.value)


def test_a_file_with_fewer_bytes_than_its_header_says_is_caught_on_loading(tmp_path):
    folder = write_folder(tmp_path / "d", gz=False)
    dataset = describe_folder(folder)
    data = (folder / "test-images").read_bytes()
    (folder / "test-images").write_bytes(data[:-3])
    with pytest.raises(DataError, match=r"test-images: truncated"):
        load_folder_split(dataset, "test")
    (folder / "test-images").write_bytes(data + b"\0")
    with pytest.raises(DataError, match=r"1 bytes after the data"):
        load_folder_split(dataset, "test")


# --- config checks against the dataset -------------------------------------------------------

def test_the_network_must_fit_the_datasets_images_and_classes(tmp_path):
    folder = write_folder(tmp_path / "d")
    lines = problems(tmp_path, config_text(folder, units=10, pixels=784))
    assert any(re.search(r"c.yaml:3: model.input: IDX data in .* images have 30 pixels, got 784 "
                         r"\(the images are 5x6\)", line) for line in lines), lines
    assert any(re.search(r"c.yaml:6: model.layers\[1\].units: the output layer needs 3 units",
                         line) for line in lines), lines
    config = load_config(_write(tmp_path, config_text(folder)))
    assert config.sizes == [30, 16, 3]


def _write(tmp_path, text):
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    return path


def test_idx_needs_a_readable_path_and_names_are_checked(tmp_path):
    lines = problems(tmp_path, "data: {dataset: idx}\nmodel: {layers: [{units: 3, "
                               "activation: softmax}]}\n")
    assert any("data.path: is required with dataset idx" in line for line in lines), lines
    lines = problems(tmp_path, config_text(tmp_path / "nowhere"))
    assert any("data.path:" in line and "not a directory" in line for line in lines), lines
    folder = write_folder(tmp_path / "d")
    lines = problems(tmp_path, config_text(folder, extra=", classes: [a, a, b]"))
    assert any("data.classes: names appear twice: a" in line for line in lines), lines
    lines = problems(tmp_path, config_text(folder, extra=", augment: {shift: 1}"))
    assert any("data.augment: works on 28x28 images" in line for line in lines), lines


def test_fashion_mnist_configs_validate_and_mnist_keeps_its_message(tmp_path):
    config = validate({"data": {"dataset": "fashion-mnist"},
                       "model": {"layers": [{"units": 10, "activation": "softmax"}]}})
    assert config.sizes == [784, 10]
    with pytest.raises(ConfigError, match=r"one per Fashion-MNIST class\), got 5"):
        validate({"data": {"dataset": "fashion-mnist"},
                  "model": {"layers": [{"units": 5, "activation": "softmax"}]}})
    with pytest.raises(ConfigError, match=r"one per digit\), got 5"):
        validate({"model": {"layers": [{"units": 5, "activation": "softmax"}]}})
    with pytest.raises(ConfigError, match=r"data.path: belongs to dataset idx"):
        validate({"data": {"dataset": "mnist", "path": "x"},
                  "model": {"layers": [{"units": 10, "activation": "softmax"}]}})


# --- the weights file ------------------------------------------------------------------------

def fashion_checkpoint():
    config = validate({"data": {"dataset": "fashion-mnist"},
                       "model": {"layers": [{"units": 8, "activation": "relu"},
                                            {"units": 10, "activation": "softmax"}]}})
    network = build_network(config, np.random.default_rng(0))
    return Checkpoint(network, MinMaxScaler(np.array(0.0), np.array(255.0)), config, [],
                      dataset=FASHION_MNIST)


def test_the_weights_file_records_the_dataset_and_old_files_are_mnist(tmp_path):
    path = save(tmp_path / "w.npz", fashion_checkpoint())
    loaded = load(path)
    assert class_names(loaded) == list(FASHION_MNIST.classes)
    assert loaded.dataset.image_shape == (28, 28) and loaded.dataset.preparation == "garment"
    with np.load(path) as archive:
        arrays = dict(archive)
    assert json.loads(str(arrays["dataset"]))["name"] == "fashion-mnist"
    old = {k: v for k, v in arrays.items() if k != "dataset"}
    old["format_version"] = np.array(1)
    old_config = json.loads(str(old["config"]))
    old_config["data"] = {k: v for k, v in old_config["data"].items()
                          if k not in ("path", "classes")} | {"dataset": "mnist"}
    old["config"] = np.array(json.dumps(old_config))
    np.savez(tmp_path / "v1.npz", **old)
    assert class_names(load(tmp_path / "v1.npz")) == [str(d) for d in range(10)]
    arrays["dataset"] = np.array(json.dumps({"name": "x", "title": "X", "classes": ["a", "b"],
                                             "image_shape": [28, 28]}))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UsageError, match=r"maps 784 inputs to 10 outputs, but its dataset X "
                                         r"has 784 pixels and 2 classes"):
        load(tmp_path / "bad.npz")
    arrays["dataset"] = np.array('{"name": 3}')
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UsageError, match=r"'dataset' is damaged"):
        load(tmp_path / "bad.npz")


# --- predict and evaluate by name ------------------------------------------------------------

def photo(path, size=(240, 160), box=(60, 30, 180, 140), background=235, article=40):
    """A product photo: a dark article on a light background."""
    image = np.full(size[::-1], background, np.uint8)
    image[box[1]:box[3], box[0]:box[2]] = article
    Image.fromarray(image).save(path)
    return path


def test_a_garment_photo_is_trimmed_fitted_to_28_centred_and_negated(tmp_path):
    from nnctl.garment import prepare

    pixels = prepare(photo(tmp_path / "bag.png", box=(60, 50, 180, 110))).reshape(28, 28) / 255
    rows = np.flatnonzero((pixels > 0.5).any(axis=1))
    cols = np.flatnonzero((pixels > 0.5).any(axis=0))
    assert (cols[0], cols[-1] + 1) == (0, 28)  # the longer side fills the frame: 120 -> 28
    assert 13 <= rows[-1] + 1 - rows[0] <= 15  # the other keeps the aspect ratio: 60 -> 14
    assert abs(rows[0] - (27 - rows[-1])) <= 1  # centred
    assert pixels[rows[0] + 2:rows[-1] - 1, 2:-2].min() > 0.75  # the dark article is light
    assert pixels[:rows[0] - 1].max() == 0.0 and pixels[rows[-1] + 2:].max() == 0.0
    with pytest.raises(UsageError, match="no object found"):
        prepare(photo(tmp_path / "blank.png", article=235))


def test_predict_names_the_class_in_text_and_json(tmp_path):
    weights = save(tmp_path / "w.npz", fashion_checkpoint())
    image = photo(tmp_path / "boot.png")
    text = run("predict", image, "--weights", weights)
    assert text.exit_code == 0, text.output
    top = json.loads(run("predict", image, "--weights", weights, "--json").output)[0]
    name = FASHION_MNIST.classes[top["label"]]
    assert top["class"] == name and top["classes"] == list(FASHION_MNIST.classes)
    assert f"boot.png: {name} {100 * max(top['probabilities']):.1f}%" in text.output


def test_the_worked_example_of_the_docs_runs_as_written(tmp_path, monkeypatch):
    """docs/datasets.md: the script writes a small IDX set, the config trains on it."""
    doc = (ROOT / "docs" / "datasets.md").read_text()
    script = re.search(r"```python\n# make_shapes.py\n(.*?)```", doc, re.S).group(1)
    config = re.search(r"```yaml\n# shapes.yaml\n(.*?)```", doc, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ})
    Path("shapes.yaml").write_text(config)
    trained = run("train", "shapes.yaml", "--quiet")
    assert trained.exit_code == 0, trained.output
    report = json.loads(run("evaluate", "weights-shapes.npz", "--json").output)
    assert report["accuracy"] > 0.9 and report["classes"] == ["horizontal", "vertical", "square"]
    assert [c["name"] for c in report["per_class"]] == report["classes"]
    table = run("evaluate", "weights-shapes.npz")
    assert "0 horizontal" in table.output and "2 square" in table.output
    Image.fromarray(np.zeros((16, 16), np.uint8)).save("blank16.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save("blank28.png")
    shown = run("predict", "blank16.png", "--weights", "weights-shapes.npz", "--show")
    assert shown.exit_code == 0 and "blank16.png: " in shown.output
    wrong = run("predict", "blank28.png", "--weights", "weights-shapes.npz")
    assert wrong.exit_code == 2 and "takes 16x16 images as they are, got 28x28" in wrong.output


# --- evaluate needs one split only -----------------------------------------------------------

def test_evaluate_fetches_only_the_test_split_and_leaves_nothing_when_offline(
        tmp_path, shared_mnist, monkeypatch):
    config = validate({"model": {"layers": [{"units": 10, "activation": "softmax"}]}})
    network = build_network(config, np.random.default_rng(0))
    weights = save(tmp_path / "w.npz", Checkpoint(network, MinMaxScaler(np.array(0.0),
                                                                        np.array(255.0)), config))
    mirror = tmp_path / "only-test"
    mirror.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (mirror / name).symlink_to(shared_mnist / name)
    monkeypatch.setenv("NNCTL_MNIST_MIRROR", str(mirror))
    result = run("evaluate", weights, "--data-dir", tmp_path / "data", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 10000
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    monkeypatch.setenv("NNCTL_MNIST_MIRROR", str(tmp_path / "nothing-here"))
    offline = run("evaluate", weights, "--data-dir", tmp_path / "offline")
    assert offline.exit_code == 1 and "could not get t10k-images-idx3-ubyte.gz" in offline.output
    assert not (tmp_path / "offline").exists()


def test_plot_titles_name_the_dataset(tmp_path, monkeypatch):
    import nnctl.plot

    checkpoint = fashion_checkpoint()
    checkpoint.history.append({"epoch": 1})
    weights = save(tmp_path / "w.npz", checkpoint)
    titles = []
    monkeypatch.setattr(nnctl.plot, "plot_history", lambda history, out, title: titles.append(title))
    assert run("plot", weights, "-o", tmp_path / "c.png").exit_code == 0
    assert titles == [f"{weights} (Fashion-MNIST)"]


def test_data_commands_take_the_dataset(tmp_path, monkeypatch):
    empty = run("data", "info", "--dataset", "fashion-mnist", "--data-dir", tmp_path)
    assert empty.exit_code == 1 and "nnctl data download --dataset fashion-mnist" in empty.output
    assert "Fashion-MNIST cache in" in empty.output
    unknown = run("data", "info", "--dataset", "kmnist")
    assert unknown.exit_code == 2 and "unknown dataset 'kmnist'" in unknown.output
    monkeypatch.setenv("NNCTL_FASHION_MNIST_MIRROR", str(tmp_path / "nowhere"))
    failed = run("data", "download", "--dataset", "fashion-mnist", "--data-dir", tmp_path / "d")
    assert failed.exit_code == 1 and "NNCTL_FASHION_MNIST_MIRROR is set to" in failed.output
    assert not (tmp_path / "d").exists()


def test_a_run_resumes_only_on_the_dataset_it_started_on(tmp_path):
    folder = write_folder(tmp_path / "d", classes=10, shape=(28, 28))
    config = tmp_path / "c.yaml"
    config.write_text(config_text(folder, units=10, pixels=784))
    assert run("train", config, "--epochs", "1", "--out", tmp_path / "w.npz", "-q").exit_code == 0
    fashion = tmp_path / "f.yaml"
    fashion.write_text(config_text(folder, units=10, pixels=784).replace(
        f"dataset: idx, path: {folder}", "dataset: fashion-mnist"))
    result = run("train", fashion, "--resume", tmp_path / "w.npz", "--data-dir", tmp_path)
    assert result.exit_code == 2
    assert "cannot resume: the weights were trained on IDX data in" in result.output


def test_a_photo_made_from_a_fashion_mnist_image_is_prepared_back_into_it(
        tmp_path, shared_fashion_mnist):
    """Undo Fashion-MNIST's making (negate, enlarge, put on a white page), then prepare: the
    result is the original image again, up to resampling."""
    from nnctl.data.mnist import load_split
    from nnctl.garment import prepare

    images, _ = load_split("test", tmp_path, sources=[str(shared_fashion_mnist)],
                           dataset=FASHION_MNIST)
    correlations = []
    for index in range(0, 10000, 1000):
        original = images[index].reshape(28, 28).astype(np.float64)
        enlarged = Image.fromarray(255 - images[index].reshape(28, 28)).resize(
            (224, 224), Image.Resampling.BICUBIC)
        page = Image.new("L", (400, 300), 255)
        page.paste(enlarged, (120, 30))
        page.save(tmp_path / "photo.png")
        prepared = prepare(tmp_path / "photo.png").reshape(28, 28)
        correlations.append(np.corrcoef(original.ravel(), prepared.ravel())[0, 1])
    assert min(correlations) > 0.8 and np.mean(correlations) > 0.9, correlations
