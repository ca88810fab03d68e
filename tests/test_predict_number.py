"""`nnctl predict --number` and `--explain`, and 28x28 MNIST images taken exactly as they are."""

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import validate
from nnctl.data.scaler import MinMaxScaler
from nnctl.experiment import build_network
from nnctl.imaging import prepare
from nnctl.predict import predict_files
from nnctl.weights import Checkpoint, load, save

runner = CliRunner()


def tiny_weights(folder):
    config = validate({"model": {"layers": [{"units": 8, "activation": "relu"},
                                            {"units": 10, "activation": "softmax"}]}})
    network = build_network(config, np.random.default_rng(0))
    path = folder / "tiny.npz"
    save(path, Checkpoint(network, MinMaxScaler(np.array(0.0), np.array(255.0)), config))
    return path


def row_of_blobs(path):
    """Three digit-like shapes in a row, dark on light, the middle one in two strokes."""
    page = np.full((160, 420), 235, np.uint8)
    page[30:130, 40:52] = 30
    page[30:90, 170:180] = 30  # two strokes of one "4", not touching
    page[80:90, 170:230] = 30
    page[30:130, 215:226] = 30
    page[30:130, 320:370] = 30
    page[50:110, 333:357] = 235
    Image.fromarray(page).save(path)
    return path


def test_number_json_gives_digits_left_to_right_with_boxes(tmp_path):
    weights = tiny_weights(tmp_path)
    image = row_of_blobs(tmp_path / "row.png")
    result = runner.invoke(app, ["predict", str(image), "--number", "--json",
                                 "--weights", str(weights), "--explain", str(tmp_path / "why")])
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.stdout)
    digits = answer["digits"]
    assert len(digits) == 3 and answer["number"] == "".join(str(d["label"]) for d in digits)
    boxes = [d["box"] for d in digits]
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    assert boxes[1][0] <= 170 and boxes[1][2] >= 226  # the two-stroke digit is one
    assert all(abs(sum(d["probabilities"]) - 1) < 1e-4 for d in digits)
    picture = Image.open(tmp_path / "why" / "row-explain.png")
    assert picture.width > 300 and picture.height > 300


def test_number_text_output_and_errors(tmp_path):
    weights = tiny_weights(tmp_path)
    image = row_of_blobs(tmp_path / "row.png")
    result = runner.invoke(app, ["predict", str(image), "--number", "--weights", str(weights)])
    assert result.exit_code == 0 and "digit 3 at" in result.output
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((50, 80), 200, np.uint8)).save(blank)
    result = runner.invoke(app, ["predict", str(blank), "--number", "--weights", str(weights)])
    assert result.exit_code == 2 and "no ink found" in result.output
    result = runner.invoke(app, ["predict", str(image), "--number", "--raw", "--weights", str(weights)])
    assert result.exit_code == 2 and "cannot be combined" in result.output


def test_explain_writes_one_picture_per_image(tmp_path):
    weights = tiny_weights(tmp_path)
    photo = np.full((300, 200), 220, np.uint8)
    photo[60:240, 90:104] = 40
    Image.fromarray(photo).save(tmp_path / "one.png")
    Image.fromarray(np.zeros((28, 28), np.uint8) + np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "small.png")
    result = runner.invoke(app, ["predict", str(tmp_path / "one.png"), str(tmp_path / "small.png"),
                                 "--weights", str(weights), "--explain", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one-explain.png", "small-explain.png"]
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = runner.invoke(app, ["predict", str(tmp_path / "one.png"), "--weights", str(weights),
                                 "--explain", str(blocked / "sub")])
    assert result.exit_code == 2 and "--explain" in result.output and "Traceback" not in result.output


def test_an_mnist_like_28x28_png_is_taken_as_it_is(tmp_path):
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:15] = 255
    digit[6:9, 9:12] = 128
    Image.fromarray(digit).save(tmp_path / "d.png")
    assert np.array_equal(prepare(tmp_path / "d.png"), digit.reshape(-1).astype(np.float64))
    Image.fromarray(255 - digit).save(tmp_path / "paper.png")  # dark on light: inverted only
    assert np.array_equal(prepare(tmp_path / "paper.png"), digit.reshape(-1).astype(np.float64))


def test_an_mnist_test_digit_saved_as_png_is_predicted_as_evaluate_sees_it(tmp_path, mnist_cache):
    from nnctl.data.mnist import load_mnist

    mnist = load_mnist(mnist_cache, sources=[])
    checkpoint = load(tiny_weights(tmp_path))
    images = mnist.test_images[:20]
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(image.reshape(28, 28)).save(paths[-1])
    results = predict_files(checkpoint, paths)
    seen = checkpoint.network.forward(checkpoint.scaler.transform(images, checkpoint.network.dtype))
    assert np.array_equal(np.stack([r.probabilities for r in results]), seen)
