"""Hostile configs and images: each ends in a clean, one-line error or a sensible answer."""

import struct
import zlib

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from nnctl.config import load_config
from nnctl.errors import ConfigError, UsageError
from nnctl.imaging import prepare

GOOD = {
    "data": {"validation": 1000, "scaling": "global"},
    "model": {"init": "auto", "layers": [{"units": 16, "activation": "leaky_relu", "slope": 0.1},
                                         {"units": 10, "activation": "softmax"}]},
    "loss": "sparse_categorical_crossentropy",
    "training": {"epochs": 2, "batch_size": 32, "learning_rate": 0.1,
                 "optimizer": {"name": "sgd", "momentum": 0.9}, "seed": 1},
    "output": "w.npz",
}

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=8)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, prefix + (index,))


ALL_PATHS = [p for p in paths(GOOD) if p]


def replaced(node, path, value):
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = replaced(node[path[0]], path[1:], value)
    return copy


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ALL_PATHS), value=values)
def test_any_mutated_config_validates_or_fails_cleanly(tmp_path, path, value):
    config = tmp_path / "fuzz.yaml"
    config.write_text(yaml.safe_dump(replaced(GOOD, path, value)))
    try:
        load_config(config)
    except ConfigError as error:
        assert str(error) and all(line.startswith(str(config)) for line in str(error).splitlines())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damaged_config_text_fails_cleanly(tmp_path, data):
    text = bytearray(yaml.safe_dump(GOOD).encode())
    for _ in range(data.draw(st.integers(1, 5))):
        position = data.draw(st.integers(0, len(text) - 1))
        text[position] = data.draw(st.sampled_from(b" :-[]{}&*!|>'\"\n\t#%@x0"))
    config = tmp_path / "damaged.yaml"
    config.write_bytes(bytes(text))
    try:
        load_config(config)
    except (ConfigError, UsageError) as error:
        assert str(error)


def png_declaring(width, height):
    """A tiny PNG whose header declares a huge image: a decompression bomb's shape."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def stroke(size=(60, 60), dark_on_light=True):
    h, w = size
    array = np.zeros((h, w), np.uint8)
    array[h // 5: 4 * h // 5, w // 2 - max(1, w // 12): w // 2 + max(1, w // 12)] = 255
    return 255 - array if dark_on_light else array


def save(tmp_path, name, image, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_bytes(b""), "not an image"),
    (lambda p: p.write_text("not an image at all"), "not an image"),
    (lambda p: p.write_bytes(png_declaring(60000, 60000)), "decompression bomb"),
])
def test_unreadable_or_bombing_files_are_refused_before_decoding(tmp_path, make, expected):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(UsageError, match=expected):
        prepare(path)


def test_a_truncated_png_is_a_clear_error(tmp_path):
    path = save(tmp_path, "t.png", Image.fromarray(stroke()))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(UsageError, match="t.png"):
        prepare(path)


def ink_is_centred(pixels):
    field = pixels.reshape(28, 28)
    ys, xs = np.indices(field.shape)
    total = field.sum()
    return (total > 0 and abs((ys * field).sum() / total - 13.5) <= 1
            and abs((xs * field).sum() / total - 13.5) <= 1 and field[0, 0] == 0)


@pytest.mark.parametrize("name, image", [
    ("gray16.png", Image.fromarray(stroke().astype(np.uint16) * 257)),
    ("palette.gif", Image.fromarray(stroke()).convert("P")),
    ("cmyk.jpg", Image.fromarray(stroke()).convert("CMYK")),
    ("tiny.png", Image.fromarray(stroke((5, 5)))),
    ("photo.jpg", Image.fromarray(stroke((3000, 4000))).convert("RGB")),
    ("rgba.png", Image.fromarray(np.dstack([np.zeros((60, 60, 3), np.uint8), 255 - stroke()]))),
])
def test_odd_but_valid_images_give_a_centred_digit(tmp_path, name, image):
    assert ink_is_centred(prepare(save(tmp_path, name, image)))


@pytest.mark.parametrize("value", [0, 255])
def test_all_white_and_all_black_have_no_ink(tmp_path, value):
    path = save(tmp_path, "flat.png", Image.fromarray(np.full((40, 40), value, np.uint8)))
    with pytest.raises(UsageError, match="no ink found"):
        prepare(path)
