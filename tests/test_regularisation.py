"""Schedules, dropout, augmentation, early stopping and plots."""

import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.activations import get_activation
from nnctl.augment import augment
from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.errors import ConfigError
from nnctl.gradcheck import relative_error
from nnctl.losses import get_loss
from nnctl.network import Network
from nnctl.schedules import learning_rate
from nnctl.weights import load

runner = CliRunner()


def test_schedules():
    assert [learning_rate("step", 1.0, e, 30, step_size=10, gamma=0.5) for e in (1, 10, 11, 21)] \
        == [1.0, 1.0, 0.5, 0.25]
    cosine = [learning_rate("cosine", 1.0, e, 11, minimum=0.1) for e in range(1, 12)]
    expected = [0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t / 11)) for t in range(11)]
    assert cosine == pytest.approx(expected) and cosine[0] == 1.0
    assert all(a > b for a, b in zip(cosine, cosine[1:]))
    assert learning_rate("cosine", 0.1, 8, 8) > 0  # the last epoch still learns
    warm = [learning_rate("constant", 0.4, e, 10, warmup=4) for e in (1, 2, 4, 5)]
    assert warm == pytest.approx([0.1, 0.2, 0.4, 0.4])


def dropout_net():
    rng = np.random.default_rng(0)
    net = Network.create([5, 7, 6, 3], [get_activation("tanh"), get_activation("sigmoid"),
                                        get_activation("softmax")], rng, "xavier", np.float64,
                         dropout=[0.3, 0.5, 0.0])
    return net, rng.uniform(-1, 1, (8, 5)), rng.integers(0, 3, 8)


def test_dropout_backprop_matches_finite_differences_for_a_fixed_mask():
    net, x, y = dropout_net()
    loss = get_loss("sparse_categorical_crossentropy")
    net.backprop(x, y, loss, rng=np.random.default_rng(9))
    for p in net.params:
        analytic = p.grad.copy()
        numeric = np.zeros_like(analytic)
        flat, out = p.value.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + 1e-6
            plus = net.loss(x, y, loss, rng=np.random.default_rng(9))
            flat[i] = original - 1e-6
            minus = net.loss(x, y, loss, rng=np.random.default_rng(9))
            flat[i] = original
            out[i] = (plus - minus) / 2e-6
        assert relative_error(analytic, numeric) < 1e-6, p.name


def test_dropout_drops_in_training_only():
    net, x, y = dropout_net()
    assert np.array_equal(net.forward(x), net.forward(x))
    loss = get_loss("sparse_categorical_crossentropy")
    first = net.loss(x, y, loss, rng=np.random.default_rng(1))
    second = net.loss(x, y, loss, rng=np.random.default_rng(2))
    assert first != second


def test_augmentation_is_identity_at_zero_and_reproducible():
    rng = np.random.default_rng(0)
    x = rng.random((16, 784), dtype=np.float32)
    assert np.allclose(augment(x, rng), x)
    a = augment(x, np.random.default_rng(5), shift=2, rotate=10, scale=0.1)
    b = augment(x, np.random.default_rng(5), shift=2, rotate=10, scale=0.1)
    assert a.dtype == np.float32 and a.shape == x.shape and np.array_equal(a, b)
    assert not np.allclose(a, x) and a.min() >= 0 and a.max() <= 1


def test_a_pure_shift_moves_the_ink():
    x = np.zeros((1, 28, 28), np.float32)
    x[0, 10:18, 12:16] = 1
    class Fixed:  # a generator whose uniform draws are all at the top of the range
        def uniform(self, low, high, size):
            return np.full(size, high)
    moved = augment(x.reshape(1, -1), Fixed(), shift=3).reshape(28, 28)
    assert np.allclose(moved[13:21, 15:19], 1) and moved.sum() == pytest.approx(32)


def test_a_flip_mirrors_the_chosen_images_exactly_and_leaves_the_others():
    rng = np.random.default_rng(3)
    x = rng.random((400, 784), dtype=np.float32)
    images = x.reshape(-1, 28, 28)
    assert np.array_equal(augment(x, rng, flip=1.0).reshape(-1, 28, 28), images[:, :, ::-1])
    half = augment(x, np.random.default_rng(4), flip=0.5).reshape(-1, 28, 28)
    mirrored = np.array([np.array_equal(h, i[:, ::-1]) for h, i in zip(half, images)])
    kept = np.array([np.array_equal(h, i) for h, i in zip(half, images)])
    assert np.all(mirrored ^ kept) and 150 < mirrored.sum() < 250


def test_erasing_covers_one_rectangle_of_the_chosen_images_with_noise():
    x = np.full((400, 784), 0.5, np.float32)
    x[:, 0] = 0.0  # the batch's range, which the noise spans
    x[:, 1] = 1.0
    erased = augment(x, np.random.default_rng(6), erase=0.5)
    assert np.array_equal(erased, augment(x, np.random.default_rng(6), erase=0.5))
    changed = (erased != x).reshape(-1, 28, 28)
    hit = changed.any(axis=(1, 2))
    assert 150 < hit.sum() < 250  # about half the images
    for mask in changed[hit]:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.mean() > 0.9  # one rectangle (a few noise pixels may equal 0.5 exactly)
        assert 0.015 * 784 <= box.size <= 0.45 * 784
    assert erased.min() >= 0.0 and erased.max() <= 1.0
    noise = erased[changed.reshape(len(x), -1)]
    assert abs(noise.mean() - 0.5) < 0.02 and abs(noise.std() - np.sqrt(1 / 12)) < 0.02  # uniform
    np.testing.assert_array_equal(augment(x, np.random.default_rng(6), flip=0.3),
                                  augment(x, np.random.default_rng(6), flip=0.3, erase=0.0))


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_new_keys_are_validated(tmp_path):
    path = write(tmp_path, """\
        model:
          layers:
            - {units: 8, activation: relu, dropout: 1.5}
            - {units: 10, activation: softmax, dropout: 0.1}
        training:
          schedule: {name: linear}
          early_stopping: 3
        data: {augment: {shift: 20, erase: 1.5}}
        """)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    for expected in ("model.layers[0].dropout: must be a number in [0, 1)",
                     "model.layers[1].dropout: dropout belongs to hidden layers",
                     "training.schedule.name: unknown value 'linear'",
                     "training.early_stopping: needs a validation split",
                     "data.augment.shift: must be a number in [0, 8]",
                     "data.augment.erase: must be a number in [0, 1]"):
        assert expected in text


def test_early_stopping_restores_the_best_epoch(tmp_path, mnist_cache):
    config = write(tmp_path, """\
        data: {validation: 57000}
        model:
          layers:
            - {units: 16, activation: relu}
            - {units: 10, activation: softmax}
        training:
          epochs: 40
          batch_size: 50
          learning_rate: 0.5
          early_stopping: 2
        """)
    out = tmp_path / "w.npz"
    result = runner.invoke(app, ["train", str(config), "--out", str(out), "--data-dir",
                                 str(mnist_cache)])
    assert result.exit_code == 0, result.output
    checkpoint = load(out)
    accuracies = [h["evaluations"]["validation"]["accuracy"] for h in checkpoint.history]
    best = int(np.argmax(accuracies))
    assert len(accuracies) < 40 and len(accuracies) - 1 - best == 2
    assert checkpoint.train_state is None  # best weights with later state would not resume
    from nnctl.data.mnist import load_mnist

    mnist = load_mnist(mnist_cache, download=False)
    x = checkpoint.scaler.transform(mnist.train_images[3000:])
    accuracy = np.mean(checkpoint.network.forward(x).argmax(axis=1) == mnist.train_labels[3000:])
    assert accuracy == pytest.approx(accuracies[best], abs=1e-9)


def test_plot_writes_a_png_or_says_how_to_install_matplotlib(tmp_path, monkeypatch):
    from nnctl.config import validate
    from nnctl.data.scaler import MinMaxScaler
    from nnctl.experiment import build_network
    from nnctl.weights import Checkpoint, save

    config = validate({"model": {"layers": [{"units": 10, "activation": "softmax"}]}})
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + e / 10,
                "evaluations": {"test": {"loss": 1.2 / e, "accuracy": 0.5 + e / 11}}}
               for e in (1, 2, 3)]
    weights = save(tmp_path / "w.npz", Checkpoint(build_network(config, np.random.default_rng(0)),
                                                  MinMaxScaler(np.array(0.0), np.array(255.0)),
                                                  config, history))
    png = tmp_path / "curves.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        result = runner.invoke(app, ["plot", str(weights), "-o", str(png)])
        assert result.exit_code == 0, result.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = runner.invoke(app, ["plot", str(weights), "-o", str(tmp_path / "other.png")])
    assert result.exit_code == 1 and "-m pip install 'matplotlib" in result.output
