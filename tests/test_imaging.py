"""MNIST-style preparation of users' images."""

import numpy as np
import pytest
from PIL import Image

from nnctl.errors import UsageError
from nnctl.imaging import prepare


def digit_one(size=100, ink=0, paper=255, thickness=8):
    """A vertical bar: dark ink on light paper by default."""
    image = np.full((size, size), paper, np.uint8)
    image[size // 5: 4 * size // 5, size // 3: size // 3 + thickness] = ink
    return image


def prepared(tmp_path, array, name="d.png", mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return prepare(path).reshape(28, 28)


def centre_of_mass(field):
    ys, xs = np.indices(field.shape)
    return (ys * field).sum() / field.sum(), (xs * field).sum() / field.sum()


def test_dark_ink_on_white_becomes_light_ink_on_black_centred_in_20_pixels(tmp_path):
    field = prepared(tmp_path, digit_one())
    assert field.max() == pytest.approx(255, abs=30) and field[0, 0] == 0
    rows = np.flatnonzero(field.max(axis=1) > 50)
    assert 18 <= rows[-1] - rows[0] + 1 <= 21  # the longer side is about 20 pixels
    cy, cx = centre_of_mass(field)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def test_light_ink_on_black_is_not_inverted_and_position_does_not_matter(tmp_path):
    a = prepared(tmp_path, 255 - digit_one(), "a.png")
    shifted = np.roll(255 - digit_one(), (-15, 30), axis=(0, 1))
    b = prepared(tmp_path, shifted, "b.png")
    assert np.allclose(a, b)


def test_transparent_background_counts_as_background(tmp_path):
    rgba = np.zeros((60, 60, 4), np.uint8)  # transparent black everywhere
    rgba[10:50, 28:34] = (0, 0, 0, 255)  # opaque black stroke
    path = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(path)
    field = prepare(path).reshape(28, 28)
    assert field.max() > 200 and field[0, 0] == 0


def test_blank_and_unreadable_images_are_clear_errors(tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((30, 30), 255, np.uint8)).save(blank)
    with pytest.raises(UsageError, match="no ink found"):
        prepare(blank)
    text = tmp_path / "text.png"
    text.write_text("hello")
    with pytest.raises(UsageError, match="not an image"):
        prepare(text)
    with pytest.raises(UsageError, match="no such image"):
        prepare(tmp_path / "missing.png")


def test_raw_takes_28x28_as_it_is(tmp_path):
    array = np.zeros((28, 28), np.uint8)
    array[5, 6] = 200
    path = tmp_path / "raw.png"
    Image.fromarray(array).save(path)
    assert np.allclose(prepare(path, raw=True).reshape(28, 28), array)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(path)
    with pytest.raises(UsageError, match="--raw needs a 28x28 image"):
        prepare(path, raw=True)
