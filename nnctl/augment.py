"""Data augmentation on whole batches in NumPy: random shifts, rotations, scaling and
left-right mirroring, then random erasing.

Each image gets its own random affine map about the centre of the 28x28 field. Every output
pixel is pulled from the source image by bilinear interpolation (inverse mapping), with zero
(background) outside the field, as four gathers over the whole batch at once.

Random erasing (Zhong et al., 2017) then covers a random rectangle of some images with noise,
so that the network cannot lean on any one part of the picture: a shirt is still a shirt
with a sleeve hidden.
"""

from __future__ import annotations

import numpy as np

SIDE = 28
PADDED = SIDE + 2  # a one-pixel zero border makes every bilinear neighbour a valid index
_rows, _cols = np.indices((SIDE, SIDE)).reshape(2, -1).astype(np.float64)
_U, _V = _cols - (SIDE - 1) / 2, _rows - (SIDE - 1) / 2


def augment(x: np.ndarray, rng: np.random.Generator, shift: float = 0.0, rotate: float = 0.0,
            scale: float = 0.0, flip: float = 0.0, erase: float = 0.0) -> np.ndarray:
    """A transformed copy of a batch of flattened 28x28 images (rows of x).

    shift: up to this many pixels each way; rotate: up to this many degrees; scale: zoom by a
    factor within 1 +- scale; flip: the chance that an image is mirrored left to right (a
    shoe pointing the other way is still a shoe; a mirrored 3 is no digit); erase: the chance
    that an image has a rectangle replaced by noise (see `_erase`)."""
    out = _affine(x, rng, shift, rotate, scale, flip) if shift or rotate or scale or flip else x.copy()
    if erase:
        _erase(out, rng, erase)
    return out


def _affine(x: np.ndarray, rng: np.random.Generator, shift: float, rotate: float, scale: float,
            flip: float) -> np.ndarray:
    n = len(x)
    mirror = np.where(rng.random((n, 1)) < flip, -1.0, 1.0) if flip else 1.0
    angle = np.deg2rad(rng.uniform(-rotate, rotate, (n, 1))) if rotate else np.zeros((n, 1))
    zoom = rng.uniform(1.0 - scale, 1.0 + scale, (n, 1)) if scale else np.ones((n, 1))
    tx, ty = (rng.uniform(-shift, shift, (2, n, 1)) if shift else np.zeros((2, n, 1)))
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    u, v = (_U - tx) * mirror, _V - ty
    src_x = cos * u + sin * v + (SIDE - 1) / 2 + 1  # +1: into the padded field
    src_y = -sin * u + cos * v + (SIDE - 1) / 2 + 1
    np.clip(src_x, 0.0, PADDED - 1.001, out=src_x)
    np.clip(src_y, 0.0, PADDED - 1.001, out=src_y)
    x0, y0 = np.floor(src_x), np.floor(src_y)
    fx, fy = (src_x - x0).astype(x.dtype), (src_y - y0).astype(x.dtype)
    base = (y0 * PADDED + x0).astype(np.intp)
    padded = np.zeros((n, PADDED, PADDED), dtype=x.dtype)
    padded[:, 1:-1, 1:-1] = x.reshape(n, SIDE, SIDE)
    flat = padded.reshape(n, -1)

    def at(offset: int) -> np.ndarray:
        return np.take_along_axis(flat, base + offset, axis=1)

    top = at(0) * (1 - fx) + at(1) * fx
    bottom = at(PADDED) * (1 - fx) + at(PADDED + 1) * fx
    return top * (1 - fy) + bottom * fy


ERASED_AREA = (0.02, 0.4)  # the rectangle's share of the image, as in Zhong et al.
ERASED_ASPECT = 0.3  # its height / width, between this and its inverse


def _erase(x: np.ndarray, rng: np.random.Generator, chance: float) -> None:
    """With probability `chance` per image, fill one random rectangle (2-40% of the field,
    aspect 0.3 to 3.3, wholly inside) with uniform noise over the batch's range of values,
    which is [0, 1] after min-max scaling and whatever it is after standardising."""
    n = len(x)
    hit = rng.random(n) < chance
    area = rng.uniform(*ERASED_AREA, n) * SIDE * SIDE
    aspect = np.exp(rng.uniform(np.log(ERASED_ASPECT), -np.log(ERASED_ASPECT), n))
    height = np.clip(np.rint(np.sqrt(area * aspect)), 1, SIDE).astype(np.intp)
    width = np.clip(np.rint(np.sqrt(area / aspect)), 1, SIDE).astype(np.intp)
    top = (rng.random(n) * (SIDE - height + 1)).astype(np.intp)
    left = (rng.random(n) * (SIDE - width + 1)).astype(np.intp)
    side = np.arange(SIDE)
    rows = (side >= top[:, None]) & (side < (top + height)[:, None])
    cols = (side >= left[:, None]) & (side < (left + width)[:, None])
    covered = (rows[:, :, None] & cols[:, None, :] & hit[:, None, None]).reshape(n, -1)
    noise = rng.uniform(float(x.min()), float(x.max()), x.shape).astype(x.dtype)
    np.copyto(x, noise, where=covered)
