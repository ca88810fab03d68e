"""Predictions for the web page and its API, through the same preparation as `nnctl predict`.

Uploads are never written to disk: Pillow reads them from memory. The forward pass keeps
its work arrays on the Network object, so concurrent requests each borrow one of a few
networks that share the checkpoint's weight arrays (only the small workspaces differ).
"""

from __future__ import annotations

import contextlib
import io
import queue
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from nnctl.errors import UsageError
from nnctl.network import Network
from nnctl.predict import Prediction, predict_files
from nnctl.weights import Checkpoint

# Formats a browser or a phone produces (a phone's MPO opens as JPEG). Pillow opens many
# more, EPS through Ghostscript among them: a server reads only these.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
SIDE = 28
# Preparing an image takes about 32 bytes per pixel at its peak (2 GB for the 64 million
# `nnctl predict` accepts): a server answering several requests at once takes less, enough
# for a 24-megapixel phone photo.
MAX_PIXELS = 24_000_000


class Upload(io.BytesIO):
    """An uploaded file in memory: Pillow opens it like a file, messages name it like one."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.upload_name = name

    def __str__(self) -> str:
        return self.upload_name


def check_format(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> str:
    """The image format read from the header; a UsageError when it is not one we serve or
    has more than max_pixels."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UsageError(f"{name}: the file is empty")
    Image.init()
    readable = [kind for kind in FORMATS if kind in Image.OPEN]
    try:
        with Image.open(io.BytesIO(data), formats=readable) as image:
            width, height = image.size
            kind = image.format
    except UnidentifiedImageError:
        raise UsageError(f"{name}: not an image in a format nnctl serve reads "
                         f"({', '.join(FORMATS)})") from None
    except Image.DecompressionBombError:
        raise UsageError(f"{name}: refused as a possible decompression bomb") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UsageError(f"{name}: cannot decode the image ({error})") from None
    if width * height > max_pixels:
        raise UsageError(f"{name}: {width}x{height} pixels is more than nnctl serve decodes "
                         f"({max_pixels:,}); refused as a possible decompression bomb")
    return kind


def pixel_array(value: object, shape: tuple[int, int] = (SIDE, SIDE)) -> np.ndarray:
    """An array of `shape` (rows, columns) of numbers from 0 to 255, on the dataset's scale
    (MNIST's: light ink on black)."""
    height, width = shape
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        array = np.asarray(None)  # ragged rows: reported as not an array below
    if array.shape != (height, width):
        raise UsageError(f"expected a {width}x{height} array (a list of {height} rows of "
                         f"{width} numbers), got {_shape(value)}")
    if array.dtype.kind not in "iuf":
        raise UsageError(f"expected numbers from 0 to 255 in the {width}x{height} array")
    array = array.astype(np.float64)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise UsageError("the array's values should be finite numbers from 0 to 255")
    return array


def _shape(value: object) -> str:
    if not isinstance(value, list):
        return type(value).__name__
    rows = [len(row) if isinstance(row, list) else None for row in value]
    if rows and all(r == rows[0] for r in rows) and rows[0] is not None:
        return f"{len(rows)} rows of {rows[0]}"
    return f"a list of {len(rows)} items"


def _sharing_weights(checkpoint: Checkpoint) -> Checkpoint:
    network = checkpoint.network
    twin = Network(network.weights, network.biases, network.activations, network.dropout)
    return replace(checkpoint, network=twin)


class Predictor:
    """Classifies uploaded images and arrays; safe to call from `workers` threads at once."""

    def __init__(self, checkpoint: Checkpoint, workers: int = 2, max_pixels: int = MAX_PIXELS):
        self.checkpoint = checkpoint
        self.workers = workers
        self.max_pixels = max_pixels
        self._pool: queue.SimpleQueue[Checkpoint] = queue.SimpleQueue()
        self._pool.put(checkpoint)
        for _ in range(workers - 1):
            self._pool.put(_sharing_weights(checkpoint))

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[Checkpoint]:
        checkpoint = self._pool.get()
        try:
            yield checkpoint
        finally:
            self._pool.put(checkpoint)

    def image(self, data: bytes, name: str, raw: bool = False) -> Prediction:
        """The image file's prediction, prepared as `nnctl predict` prepares it (`--raw`
        with raw); a UsageError saying what is wrong with the file otherwise."""
        check_format(data, name, self.max_pixels)
        with self._borrow() as checkpoint:
            result = predict_files(checkpoint, [Upload(data, name)], raw)[0]
        if result.error:
            raise UsageError(f"{name}: {result.error}")
        return replace(result, file=name)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.checkpoint.dataset.image_shape)

    def array(self, values: np.ndarray) -> Prediction:
        """An image as an array on the dataset's scale, taken as it is (as `nnctl predict
        --raw` takes an image file)."""
        with self._borrow() as checkpoint:
            x = checkpoint.scaler.transform(values.reshape(1, -1), checkpoint.network.dtype)
            p = checkpoint.network.forward(x)[0]
            softmax = checkpoint.network.activations[-1].name == "softmax"
            return Prediction("array", int(np.argmax(p)), p, x[0].reshape(values.shape),
                              normalised=softmax, classes=checkpoint.dataset.classes)
