"""Reading users' images, and drawing a digit the way MNIST drew its digits.

A plain resize of a photo is why so many MNIST demos fail on real handwriting. MNIST digits
are light ink on black, cropped to the ink, scaled so the longer side is 20 pixels (keeping
the aspect ratio), and placed in a 28x28 field with the centre of mass at the centre.

Reading is bounded before any float work: only raster formats are opened (never PostScript,
which Pillow would hand to Ghostscript), the pixel count is checked from the header, the
image is turned upright by its EXIF orientation, reduced while still 8-bit (JPEGs decode at
a reduced scale directly) and only then converted to float. Finding the digit in a photo is
`nnctl.handwriting`'s job; `prepare` ties the two together.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.errors import UsageError

SIDE = 28
BOX = 20
MAX_PIXELS = 64_000_000  # refuse decompression bombs before decoding
INK_THRESHOLD = 0.2  # fraction of full contrast that counts as ink when cropping
WORK_SIDE = 640  # photos are reduced to this longer side before any float work
# Raster formats only: Pillow would pass EPS to Ghostscript, whatever the file is called.
RASTER_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "TGA",
                  "ICO", "PCX", "QOI")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_NUMERIC_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@dataclass(frozen=True)
class Loaded:
    """An image as float32 luminance in [0, 1], upright, at most `max_side` pixels long;
    `scale` maps its pixels back to the file's (original = scale * loaded)."""

    gray: np.ndarray
    size: tuple[int, int]  # the upright original's width and height
    scale: float


def load_image(path: Path, max_side: int | None = WORK_SIDE) -> Loaded:
    """Decode an image file safely: raster formats only, bounded size, EXIF orientation
    honoured, reduced to `max_side` before float work (None keeps every pixel)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(path, (str, os.PathLike)):
        path = Path(path)  # or a file-like object (an upload) that Pillow reads
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=RASTER_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise UsageError(f"{path}: {width}x{height} pixels is more than nnctl "
                                     f"decodes ({MAX_PIXELS:,}); refused as a possible "
                                     f"decompression bomb")
                return _decode(image, path, max_side)
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"{path}: no such image file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected an image file") from None
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image Pillow can read (raster formats only: "
                         f"PNG, JPEG, BMP, GIF, TIFF, WebP, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UsageError(f"{path}: refused as a possible decompression bomb") from None
    except (OSError, SyntaxError, ValueError, MemoryError) as error:
        raise UsageError(f"{path}: cannot decode the image ({error})") from None


def _decode(image, path: Path, max_side: int | None) -> Loaded:
    from PIL import Image, ImageOps

    if max_side and image.format in ("JPEG", "MPO"):
        # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT: a 12 Mpx photo in ~50 ms.
        image.draft(image.mode if image.mode != "CMYK" else "RGB", (max_side, max_side))
    image.load()
    image = ImageOps.exif_transpose(image)
    size = image.size
    if image.mode in ("1", "P", "CMYK", "YCbCr", "LAB", "HSV") or image.mode not in (
            *_ALPHA_MODES, *_NUMERIC_MODES, "L", "RGB"):
        has_alpha = "transparency" in image.info or image.mode in ("PA",)
        image = image.convert("RGBA" if has_alpha else "RGB" if image.mode != "1" else "L")
    if image.mode in _NUMERIC_MODES:
        gray = _numeric(np.asarray(image, dtype=np.float32), path)
        image = Image.fromarray(gray, "F")
    if max_side and max(image.size) > max_side:
        ratio = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * ratio)), max(1, round(image.height * ratio))),
                             Image.Resampling.BOX)  # an area average, still 8-bit
    if image.mode == "F":
        gray = np.asarray(image, dtype=np.float32)
    else:
        gray = _luminance(image)
    return Loaded(np.ascontiguousarray(gray, dtype=np.float32), size, size[0] / gray.shape[1])


def _numeric(values: np.ndarray, path: Path) -> np.ndarray:
    """16-bit, 32-bit and float images stretched to [0, 1]; NaN or infinity is refused."""
    if not np.isfinite(values).all():
        raise UsageError(f"{path}: the image has pixel values that are not finite "
                         f"(NaN or infinity)")
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _luminance(image) -> np.ndarray:
    """float32 luminance in [0, 1]; transparency becomes the background the ink is not."""
    if image.mode in _ALPHA_MODES:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        alpha = rgba[..., 3]
        opaque = alpha > 0.5
        ink_is_dark = not opaque.any() or gray[opaque].mean() < 0.5
        background = 1.0 if ink_is_dark else 0.0
        return gray * alpha + background * (1.0 - alpha)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def read_grayscale(path: Path) -> np.ndarray:
    """The whole image as float64 luminance in [0, 1], alpha composited onto the background."""
    return load_image(path, max_side=None).gray.astype(np.float64)


def to_ink(gray: np.ndarray) -> np.ndarray:
    """Light ink on a dark background, stretched so the background is 0 and the ink 1
    (the simple preparation for clean scans; photos go through `nnctl.handwriting`)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = gray - background if background < 0.5 else background - gray
    peak = float(ink.max())
    if peak <= 0.05:
        return np.zeros_like(ink)
    return np.clip(ink / peak, 0.0, 1.0)


def mnist_style(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit the longer side to 20 pixels, centre the mass in 28x28."""
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    return place_in_field(ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])


def place_in_field(crop: np.ndarray) -> np.ndarray:
    """A cropped digit (ink in [0, 1]) with its longer side fitted to 20 pixels, placed in
    a 28x28 field with its centre of mass at the centre, as MNIST placed its digits."""
    from PIL import Image

    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    digit = np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)
    field = np.zeros((SIDE, SIDE))
    top, left = (SIDE - size[1]) // 2, (SIDE - size[0]) // 2
    field[top:top + size[1], left:left + size[0]] = digit
    total = field.sum()
    if total <= 0:
        return field
    ys, xs = np.indices(field.shape)
    shift_y = int(round((SIDE - 1) / 2 - (ys * field).sum() / total))
    shift_x = int(round((SIDE - 1) / 2 - (xs * field).sum() / total))
    return _shift(field, shift_y, shift_x)


def _shift(field: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(field)
    h, w = field.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = field[ys, xs]
    return out


def mnist_like(gray: np.ndarray) -> np.ndarray | None:
    """A 28x28 image that already is an MNIST digit (sized and centred as MNIST's are), as
    MNIST's 0..255 values (inverted when the ink is dark on light); None for anything else."""
    if gray.shape != (SIDE, SIDE):
        return None
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    light_background = float(np.median(border)) >= 0.5
    values = (1.0 - gray) if light_background else gray
    if float(values.max()) - float(np.median(border if not light_background else 1 - border)) < 0.2:
        return None
    if not _placed_as_mnist(values):
        return None
    return _on_mnist_scale(values)


def _placed_as_mnist(values: np.ndarray) -> bool:
    """Whether the ink (light on dark) sits as MNIST's digits do: the longer side of its box
    near 20 pixels and its centre of mass near the field's centre. All 10000 MNIST test
    digits measure 17-20 pixels and lie within 1.5 pixels of the centre; a small or
    off-centre drawing is prepared instead."""
    ink = values > 0.2
    if not ink.any():
        return False
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    longer = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    total = float(values.sum())
    index = np.arange(SIDE)
    centre_y = float(values.sum(axis=1) @ index) / total
    centre_x = float(values.sum(axis=0) @ index) / total
    centred = np.hypot(centre_y - (SIDE - 1) / 2, centre_x - (SIDE - 1) / 2) <= 2.5
    return 16 <= longer <= 22 and centred


def _on_mnist_scale(values: np.ndarray) -> np.ndarray:
    """[0, 1] values as 0..255, exact integers when they came from 8-bit pixels, so that a
    saved MNIST digit reaches the network exactly as `evaluate` gives it."""
    scaled = values.astype(np.float64).reshape(-1) * 255.0
    whole = np.rint(scaled)
    return whole if np.abs(scaled - whole).max() < 1e-3 else scaled


def check_raw(gray: np.ndarray, path: Path) -> np.ndarray:
    if gray.shape != (SIDE, SIDE):
        raise UsageError(f"{path}: --raw needs a 28x28 image, got "
                         f"{gray.shape[1]}x{gray.shape[0]}")
    return _on_mnist_scale(gray)


def light_border(pixels: np.ndarray) -> bool:
    """Whether a 28x28 image (0..255) has a light border: dark ink on light paper, the
    opposite of MNIST, which a network trained on MNIST reads wrongly."""
    field = np.asarray(pixels, dtype=np.float64).reshape(SIDE, SIDE)
    border = np.concatenate([field[0], field[-1], field[:, 0], field[:, -1]])
    return float(np.median(border)) > 127.5


def prepare(path: Path, raw: bool = False) -> np.ndarray:
    """784 pixel values on MNIST's 0..255 scale, ready for the saved scaler.

    raw=True takes a 28x28 image as it is (only converted to grayscale, never inverted);
    a 28x28 MNIST-like image is taken as it is too (inverted if dark on light), another
    28x28 one is cropped, scaled and centred as MNIST's were; anything else goes through
    `nnctl.handwriting.prepare_digit`."""
    return prepare_loaded(load_image(path), path, raw)[0]


def prepare_loaded(loaded: Loaded, path: Path, raw: bool = False):
    """`prepare` on an image already loaded: the 784 values and the `Digit` with its stages
    (None when the image was taken as it is)."""
    from nnctl.handwriting import prepare_digit

    if raw:
        return check_raw(loaded.gray, path), None
    same = mnist_like(loaded.gray)
    if same is not None:
        return same, None
    if loaded.gray.shape == (SIDE, SIDE):  # a drawing at MNIST's own size: no paper to clean
        ink = to_ink(loaded.gray)
        if not (ink > INK_THRESHOLD).any():
            raise UsageError(f"{path}: no ink found (the image is blank or has no contrast)")
        return mnist_style(ink).reshape(-1) * 255.0, None
    try:
        digit = prepare_digit(loaded.gray)
    except UsageError as error:
        raise UsageError(f"{path}: {error}") from None
    return (digit.field * 255.0).reshape(-1), digit
