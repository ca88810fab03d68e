"""Turning a user's image into an MNIST-like 28x28 digit, the way MNIST itself was made.

A plain resize of a photo is why so many MNIST demos fail on real handwriting. MNIST digits
are light ink on black, cropped to the ink, scaled so the longer side is 20 pixels (keeping
the aspect ratio), and placed in a 28x28 field with the centre of mass at the centre. This
module does the same: grayscale, transparency as background, inversion when the background
is light, contrast stretched to the ink, crop, scale, centre.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnctl.errors import UsageError

SIDE = 28
BOX = 20
MAX_PIXELS = 64_000_000  # refuse decompression bombs before decoding
INK_THRESHOLD = 0.2  # fraction of full contrast that counts as ink when cropping


def read_grayscale(path: Path) -> np.ndarray:
    """The image as float64 luminance in [0, 1], alpha composited onto the background."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UsageError(f"{path}: {width}x{height} pixels is more than nnctl decodes "
                                 f"({MAX_PIXELS:,}); refused as a possible decompression bomb")
            image.load()
            return _luminance(image)
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"{path}: no such image file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected an image file") from None
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise UsageError(f"{path}: refused as a possible decompression bomb") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UsageError(f"{path}: cannot decode the image ({error})") from None


def _luminance(image) -> np.ndarray:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
        alpha = rgba[..., 3]
        opaque = alpha > 0.5
        ink_is_dark = not opaque.any() or gray[opaque].mean() < 0.5
        background = 1.0 if ink_is_dark else 0.0
        return gray * alpha + background * (1.0 - alpha)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = values.min(), values.max()
        return (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def to_ink(gray: np.ndarray) -> np.ndarray:
    """Light ink on a dark background, stretched so the background is 0 and the ink 1."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = gray - background if background < 0.5 else background - gray
    peak = float(ink.max())
    if peak <= 0.05:
        return np.zeros_like(ink)
    return np.clip(ink / peak, 0.0, 1.0)


def mnist_style(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit the longer side to 20 pixels, centre the mass in 28x28."""
    from PIL import Image

    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    digit = np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)
    field = np.zeros((SIDE, SIDE))
    top, left = (SIDE - size[1]) // 2, (SIDE - size[0]) // 2
    field[top:top + size[1], left:left + size[0]] = digit
    total = field.sum()
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


def light_border(pixels: np.ndarray) -> bool:
    """Whether a 28x28 image (0..255) has a light border: dark ink on light paper, the
    opposite of MNIST, which a network trained on MNIST reads wrongly."""
    field = np.asarray(pixels, dtype=np.float64).reshape(SIDE, SIDE)
    border = np.concatenate([field[0], field[-1], field[:, 0], field[:, -1]])
    return float(np.median(border)) > 127.5


def prepare(path: Path, raw: bool = False) -> np.ndarray:
    """784 pixel values on MNIST's 0..255 scale, ready for the saved scaler.

    raw=True takes a 28x28 image as it is (only converted to grayscale, never inverted)."""
    gray = read_grayscale(path)
    if raw:
        if gray.shape != (SIDE, SIDE):
            raise UsageError(f"{path}: --raw needs a 28x28 image, got "
                             f"{gray.shape[1]}x{gray.shape[0]}")
        return (gray * 255.0).reshape(-1)
    ink = to_ink(gray)
    if not (ink > INK_THRESHOLD).any():
        raise UsageError(f"{path}: no ink found (the image is blank or has no contrast)")
    return (mnist_style(ink) * 255.0).reshape(-1)
