"""Turning a user's photo of a garment into a Fashion-MNIST-like 28x28 image.

Fashion-MNIST was not made like MNIST: Zalando's product photos (an article on a plain light
background) were trimmed to the object, their longer side resized to 28 pixels, sharpened,
centred on a 28x28 canvas, negated and turned to 8-bit grayscale. So the object is light on
black and fills the frame along its longer side, with no contrast stretching and no centring
of mass. This module does the same to a photo: the background is the colour of the border,
the object whatever differs from it by more than 5% of the range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnctl.errors import UsageError
from nnctl.imaging import SIDE, prepare as prepare_digit, read_grayscale

TRIM_TOLERANCE = 0.05  # Fashion-MNIST's trimming: within 5% of the background colour


def background_level(gray: np.ndarray) -> float:
    """The background's luminance: the median of the image's border."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border))


def garment_style(gray: np.ndarray) -> np.ndarray:
    """Trim to the object, longer side to 28, sharpen, centre, negate: 28x28 in [0, 1]."""
    from PIL import Image, ImageFilter

    background = background_level(gray)
    mask = np.abs(gray - background) > TRIM_TOLERANCE
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    # the object as light on black, the background at 0 (negation of a light background)
    if background >= 0.5:
        light = (background - crop) / background
    else:
        light = (crop - background) / (1.0 - background)
    light = np.clip(light, 0.0, 1.0)
    height, width = light.shape
    scale = SIDE / max(height, width)
    size = (max(1, min(SIDE, round(width * scale))), max(1, min(SIDE, round(height * scale))))
    image = Image.fromarray(np.round(light * 255).astype(np.uint8))
    image = image.resize(size, Image.Resampling.LANCZOS)
    image = image.filter(ImageFilter.UnsharpMask(radius=1, percent=100, threshold=0))
    field = np.zeros((SIDE, SIDE))
    top, left = (SIDE - size[1] + 1) // 2, (SIDE - size[0] + 1) // 2  # odd margins: more above, left
    field[top:top + size[1], left:left + size[0]] = np.asarray(image, dtype=np.float64) / 255
    return field


def prepare(path: Path, raw: bool = False) -> np.ndarray:
    """784 pixel values on Fashion-MNIST's 0..255 scale, ready for the saved scaler.

    raw=True takes a 28x28 image as it is, as for digits."""
    if raw:
        return prepare_digit(path, raw=True)
    gray = read_grayscale(path)
    if not (np.abs(gray - background_level(gray)) > TRIM_TOLERANCE).any():
        raise UsageError(f"{path}: no object found (the image is blank or has no contrast)")
    return (garment_style(gray) * 255.0).reshape(-1)
