"""Hostile and odd image files: bounded, upright, raster only, finite, one clear error."""

import json
import tracemalloc
import warnings
import zlib
import struct

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nnctl.errors import UsageError
from nnctl.imaging import prepare
from tests.test_hostile_inputs import png_declaring

EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 28 28
0 0 moveto 28 28 lineto stroke
showpage
%%EOF
"""


@pytest.mark.parametrize("name", ["digit.png", "digit.eps", "digit.jpg"])
def test_postscript_is_never_handed_to_ghostscript_whatever_its_name(tmp_path, monkeypatch, name):
    from PIL import EpsImagePlugin

    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    path = tmp_path / name
    path.write_bytes(EPS)
    with pytest.raises(UsageError, match="not an image Pillow can read"):
        prepare(path)
    assert calls == []


def float_tiff(tmp_path, values):
    path = tmp_path / "f.tif"
    Image.fromarray(values.astype(np.float32), "F").save(path)
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_pixel_is_refused_with_and_without_raw(tmp_path, bad):
    values = np.zeros((28, 28), np.float32)
    values[10:20, 13:15] = 1.0
    values[3, 3] = bad
    path = float_tiff(tmp_path, values)
    for raw in (True, False):
        with pytest.raises(UsageError, match="not finite"):
            prepare(path, raw=raw)


def test_predict_json_stays_valid_json_on_a_non_finite_image(tmp_path):
    from nnctl.cli.app import app
    from tests.test_predict_number import tiny_weights

    values = np.zeros((28, 28), np.float32)
    values[5, 5] = np.nan
    path = float_tiff(tmp_path, values)
    result = CliRunner().invoke(app, ["predict", str(path), "--raw", "--json",
                                      "--weights", str(tiny_weights(tmp_path))])
    assert result.exit_code == 2
    answer = json.loads(result.stdout)  # no bare NaN in the output
    assert "not finite" in answer[0]["error"] and "Traceback" not in result.output


def big_rgba_png(path, side=7999):
    """A 7999x7999 RGBA PNG (white, a dark bar in the middle), a few hundred KB on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    white = b"\0" + b"\xff" * (4 * side)
    bar = bytearray(white)
    bar[1 + 4 * (side // 2 - 200): 1 + 4 * (side // 2 + 200)] = b"\x10\x10\x10\xff" * 400
    packer = zlib.compressobj(1)
    data = bytearray()
    for row in range(side):
        data += packer.compress(bytes(bar) if side // 5 < row < 4 * side // 5 else white)
    data += packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bytes(data))
                     + chunk(b"IEND", b""))
    return path


def test_a_huge_rgba_png_is_reduced_before_any_float_work(tmp_path):
    path = big_rgba_png(tmp_path / "big.png")
    tracemalloc.start()
    try:
        field = prepare(path).reshape(28, 28)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6  # NumPy's arrays; a float64 copy of the RGBA image would be 2 GB
    rows = np.flatnonzero(field.max(axis=1) > 100)
    assert 18 <= len(rows) <= 21  # the bar, found and fitted to 20 pixels


def test_a_declared_100_megapixel_png_warns_nothing_before_the_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(10000, 10000))  # between Pillow's warning and error limits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UsageError, match="decompression bomb"):
            prepare(path)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
