import numpy as np
import pytest

from nnctl.data.idx import encode_idx, parse_idx
from nnctl.errors import DataError


def test_round_trip_of_images_and_labels():
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    labels = np.array([7, 2, 1], dtype=np.uint8)
    assert np.array_equal(parse_idx(encode_idx(images), "x"), images)
    assert np.array_equal(parse_idx(encode_idx(labels), "y"), labels)


def test_big_endian_types_come_back_native():
    values = np.array([[1.5, -2.0]], dtype=np.float32)
    parsed = parse_idx(encode_idx(values), "f")
    assert parsed.dtype == np.float32 and np.array_equal(parsed, values)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-5], "truncated: shape (2, 3) needs 6 bytes of data, found 1"),
        (lambda b: b + b"xx", "2 bytes after the data"),
        (lambda b: b"\x01" + b[1:], "not an IDX file"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b"", "not an IDX file (only 0 bytes)"),
        (lambda b: b"<html>" + b, "not an IDX file"),
    ],
)
def test_damaged_files_are_named_in_one_line(mutate, message):
    good = encode_idx(np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(DataError) as error:
        parse_idx(mutate(good), "train-labels")
    assert str(error.value).startswith("train-labels: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)
