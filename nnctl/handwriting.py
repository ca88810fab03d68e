"""Finding handwritten digits in a photo or scan, and drawing each as MNIST drew its digits.

The stages, each a small function, each done with scipy.ndimage on whole arrays:
1. paper and polarity: the paper is the dominant level wherever it sits between 0 and 1
   (a large median); the ink is whichever side of it has the heavier tail of contrast;
2. illumination flattened: the paper level is re-estimated from the paper alone (normalised
   convolution around the ink), so gradients and shadows drop out, and the ink is measured
   as a fraction of the local paper level;
3. ink threshold: Otsu's threshold (never below four times the paper's noise), with
   hysteresis, so faint ends of a stroke stay attached to its core;
4. printed lines removed: long straight runs across most of the image (squared or ruled
   paper) found by projecting the ink at every small angle (the angle at which a band
   reaches furthest along the image), taken out except where a stroke crosses them;
   parts that hug the image border (the edge of the sheet, the table) go too;
5. the digit isolated: connected components, specks and far blobs dropped, the parts of one
   digit kept together; then, within them, dim ink away from the strokes' core (a shadow or
   a dim band touching the stroke) dropped;
6. stroke width normalised: a stroke thinner than nearly all of MNIST's (1.5 of the 20 pixels) is
   thickened with a distance transform, and one bolder than nearly all (3.5) is thinned to
   MNIST's bold end (3.0) the same way;
7. the crop drawn into 28x28 as MNIST did (`nnctl.imaging.place_in_field`).
`read_digits` does stages 1-5 once and then splits a row of digits left to right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage

from nnctl.errors import UsageError
from nnctl.imaging import BOX, place_in_field

MIN_CONTRAST = 0.08  # weakest ink, as a fraction of the paper level, that counts
TARGET_STROKE = 2.2  # MNIST's median stroke width at the 20-pixel size
THIN_STROKE = 1.5  # thinner than nine MNIST digits in ten: thickened
BOLD_STROKE = 3.5  # bolder than 95 MNIST digits in a hundred: thinned to BOLD_TARGET
BOLD_TARGET = 3.0  # MNIST's 90th percentile
SPLIT_WIDTH = 0.7  # a piece wider than this many heights may be touching digits
MAX_DIGIT = 1.2  # no digit of a row is wider than this many heights ...
MIN_DIGIT = 0.08  # ... or narrower than this
MAX_CUTS = 8  # candidate cuts tried in one piece
SPLIT_COST = 0.5  # log-confidence a cut must gain: the halves of one digit often read well
FRAGMENT = 0.55  # a piece of a row lower than this many heights is part of a digit
ATTACH_GAP = 0.3  # ... when it is this close to one, in heights
TALLER = 0.1  # a piece taller than the row by this many heights is one sigma less likely
FAINT = 0.65  # a close piece under this share of the digit's mean contrast is a shadow's rim
CORE = 0.5  # ink under this share of the strokes' strongest is dim ...
EDGE = 2  # ... and is kept only within this many pixels of stronger ink (a stroke's soft edge)
LINE_REACH = 0.5  # a printed line runs across at least this share of the image
_EIGHT = np.ones((3, 3), bool)


@dataclass
class Ink:
    """Where the ink is: `strength` (0 paper .. 1 full ink, flattened), `mask` after line
    removal, `lines` the printed lines taken out, and `gray` the image it came from."""

    gray: np.ndarray
    strength: np.ndarray
    mask: np.ndarray
    lines: np.ndarray
    dark_ink: bool


@dataclass
class Digit:
    """One prepared digit: the 28x28 field in [0, 1], its box (left, top, right, bottom) in
    the image's pixels, the crop drawn into the field, and the ink it came from."""

    field: np.ndarray
    box: tuple[int, int, int, int]
    crop: np.ndarray
    ink: Ink = field(repr=False)
    mask: np.ndarray = field(repr=False, default=None)


# --- stages 1-3: paper, polarity, flattened ink, threshold -----------------------------------

def _small(gray: np.ndarray, side: int = 64) -> tuple[np.ndarray, int]:
    """Block means down to about `side` pixels on the longer side, and the block size."""
    block = max(1, int(np.ceil(max(gray.shape) / side)))
    h, w = gray.shape[0] // block * block, gray.shape[1] // block * block
    if h == 0 or w == 0:
        return gray.copy(), 1
    small = gray[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    return small, block


def _upsample(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear enlargement of a block-mean image back to the full `shape`."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(small, np.float32), "F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist).astype(np.float64)
    mean = np.cumsum(hist * centres)
    total, grand = weight[-1], mean[-1]
    w1 = total - weight
    valid = (weight > 0) & (w1 > 0)
    between = np.zeros_like(weight)
    between[valid] = (grand * weight[valid] / total - mean[valid]) ** 2 / (weight[valid] * w1[valid])
    return float(centres[int(np.argmax(between))])


def flatten(gray: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """Ink strength (0 on paper, growing with contrast relative to the local paper level),
    whether the ink is darker than the paper, and the paper's noise level."""
    small, block = _small(gray)
    window = max(3, max(small.shape) // 4) | 1
    paper = ndimage.median_filter(small, size=window, mode="nearest")
    residual = gray - _upsample(paper, gray.shape)
    spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual)))) + 1e-4
    dark = float(np.clip(-residual - 3 * spread, 0, None).sum())
    light = float(np.clip(residual - 3 * spread, 0, None).sum())
    dark_ink = dark >= light
    ink0 = -residual if dark_ink else residual
    rough = ink0 > max(otsu(ink0), 4 * spread)
    # The paper re-estimated from paper pixels only: normalised convolution around the ink.
    # Inside a bold stroke the median is ink too: the ring around it is closed and filled.
    rough = ndimage.binary_fill_holes(ndimage.binary_dilation(rough, iterations=2))
    covered, _ = _small(rough.astype(np.float32))
    paper_weight = (covered < 0.02).astype(np.float32)
    sigma = max(1.0, max(small.shape) / 12)
    num = ndimage.gaussian_filter(small * paper_weight, sigma, mode="nearest")
    den = ndimage.gaussian_filter(paper_weight, sigma, mode="nearest")
    level = np.where(den > 0.05, num / np.maximum(den, 1e-6), paper)
    level = _upsample(level.astype(np.float32), gray.shape)
    if dark_ink:
        strength = (level - gray) / np.maximum(level, 0.05)
    else:
        strength = (gray - level) / np.maximum(1.0 - level, 0.05)
    return np.clip(strength, 0, None).astype(np.float32), dark_ink, spread


def threshold(strength: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Ink mask by Otsu with hysteresis: strong pixels above the cut, and the weaker pixels
    (above half of it) connected to them; and the mask of all the weaker pixels."""
    peak = float(np.percentile(strength, 99.9)) if strength.size > 1000 else float(strength.max())
    if peak < MIN_CONTRAST or peak < 5 * noise:
        return np.zeros(strength.shape, bool), np.zeros(strength.shape, bool)
    cut = max(otsu(np.minimum(strength, peak)), 4 * noise, MIN_CONTRAST * 0.75)
    strong = strength > cut
    weak = strength > cut / 2
    labels, count = ndimage.label(weak, _EIGHT)
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels], weak


# --- stage 4: printed lines ------------------------------------------------------------------

def _line_bands(ys: np.ndarray, xs: np.ndarray, extent: int, across: int,
                max_degrees: float = 6.0) -> tuple[float, np.ndarray] | None:
    """For ink at (ys, xs), lines running along x: the best angle's slope and the offsets
    (ys - slope * x, rounded) of bands holding a line across at least LINE_REACH of extent."""
    if len(ys) < extent * LINE_REACH:
        return None
    step = max(1, len(ys) // 20000)
    sy, sx = ys[::step].astype(np.float32), xs[::step].astype(np.float32)
    margin = int(np.ceil(extent * np.tan(np.deg2rad(max_degrees)))) + 8
    size = across + 2 * margin + 1

    columns = np.clip(sx.astype(np.int64), 0, extent - 1)

    def strongest(slope: float, window: int) -> tuple[int, float, float]:
        """How line-like the projection at this slope is: first how far along the image
        one band reaches (a printed line spans it; a stroke, however thick and dark, only
        its own length), then how concentrated it is (many thin peaks beat one wide one),
        and the highest count in a band."""
        key = np.rint(sy - slope * sx).astype(np.int64) + margin
        counts = np.bincount(key, minlength=size).astype(np.float64)
        wide = np.convolve(counts, np.ones(window), "valid")
        occupied = np.zeros((size, extent), np.uint8)
        occupied[key, columns] = 1
        reach = int(ndimage.maximum_filter1d(occupied, window, axis=0).sum(axis=1).max())
        return reach, float((wide ** 2).sum()), float(wide.max())

    # Coarse angles with wide bins (a line drifts a few pixels across the image), then fine.
    coarse = np.deg2rad(np.arange(-max_degrees, max_degrees + 1e-9, 0.5))
    drift = int(np.ceil(extent * np.tan(np.deg2rad(0.25)))) * 2 + 3
    centre = max(coarse, key=lambda a: strongest(float(np.tan(a)), drift)[:2])
    fine = centre + np.arange(-0.3, 0.3 + 1e-9, np.rad2deg(1.5 / max(extent, 1))) * np.pi / 180
    slopes = np.tan(fine)
    scores = [strongest(float(slope), 3) for slope in slopes]
    pick = max(range(len(scores)), key=lambda i: scores[i][:2])
    best, best_peak = float(slopes[pick]), scores[pick][2]
    if best_peak * step < extent * LINE_REACH:
        return None
    key = np.rint(ys - best * xs).astype(np.int64) + margin
    size = across + 2 * margin + 1
    # How much of the image's length each band covers (a row through several digits is
    # dense in places, a line is continuous): distinct positions along it, +-1 band.
    occupied = np.zeros((size, extent), bool)
    occupied[key, np.clip(xs, 0, extent - 1)] = True
    occupied[1:] |= occupied[:-1].copy()
    occupied[:-1] |= occupied[1:].copy()
    wide = occupied.sum(axis=1)
    # A printed line reaches (nearly) both ends of the image; a digit's stroke does not.
    first = np.full(size, extent, np.int64)
    last = np.full(size, -1, np.int64)
    np.minimum.at(first, key, xs)
    np.maximum.at(last, key, xs)
    first = ndimage.minimum_filter1d(first, 3)
    last = ndimage.maximum_filter1d(last, 3)
    reaches = (first <= 0.15 * extent) & (last >= 0.85 * extent - 1)
    bands = np.flatnonzero((wide >= extent * LINE_REACH) & reaches) - margin
    if len(bands) == 0:
        return None
    return best, bands


def _bands_along(m: np.ndarray):
    """Printed lines running along the rows of `m`: (slope, band lookup), or None."""
    ys, xs = np.nonzero(m)
    found = _line_bands(ys, xs, m.shape[1], m.shape[0])
    if found is None:
        return None
    slope, bands = found
    band = np.zeros(m.shape[0] + 3, bool)
    band[np.clip(bands, -1, m.shape[0]) + 1] = True
    return slope, ndimage.binary_dilation(band, iterations=1)


def _in_band(band: np.ndarray, slope: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    key = np.rint(rows - slope * cols).astype(np.int64)
    return band[np.clip(key, -1, len(band) - 3) + 1]


def _line_pixels(m: np.ndarray, other: np.ndarray, slope: float, band: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of `m` on the lines, except where ink (not counting `other` lines)
    continues beyond the line on either side: a stroke crosses it or runs along it."""
    ys, xs = np.nonzero(m)
    inside = _in_band(band, slope, ys, xs)
    rows, cols = ys[inside], xs[inside]
    up, down = rows.copy(), rows.copy()
    last = m.shape[0] - 1
    for _ in range(12):  # walk to the band's edges (lines are a few pixels thick)
        nxt = np.clip(up - 1, 0, last)
        more = _in_band(band, slope, nxt, cols) & (up > 0)
        up = np.where(more, nxt, up)
        if not more.any():
            break
    for _ in range(12):
        nxt = np.clip(down + 1, 0, last)
        more = _in_band(band, slope, nxt, cols) & (down < last)
        down = np.where(more, nxt, down)
        if not more.any():
            break
    ink = m & ~other
    above = (up - 2 >= 0) & ink[np.clip(up - 2, 0, last), cols]
    below = (down + 2 <= last) & ink[np.clip(down + 2, 0, last), cols]
    keep = above | below
    return rows[~keep], cols[~keep]


def remove_lines(mask: np.ndarray, faint: np.ndarray | None = None,
                 strength: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The mask without printed lines (long, thin, straight, across most of the image) and
    the lines taken out. Where a stroke crosses a line or runs along it, ink beyond the
    line keeps it. Lines are looked for in `faint` (a lower threshold's mask) when given:
    printed lines are often lighter than the ink, and with `strength`, pixels on a line
    much darker than the line's own ink are a stroke drawn over it and stay."""
    final = mask
    mask = final if faint is None else (faint | final)
    found = {"rows": _bands_along(mask), "cols": _bands_along(mask.T)}
    band_pixels = {}
    for name, m in (("rows", mask), ("cols", mask.T)):
        in_band = np.zeros_like(m)
        if found[name] is not None:
            ys, xs = np.nonzero(m)
            hit = _in_band(found[name][1], found[name][0], ys, xs)
            in_band[ys[hit], xs[hit]] = True
        band_pixels[name] = in_band
    lines = np.zeros_like(mask)
    if found["rows"] is not None:
        rows, cols = _line_pixels(mask, band_pixels["cols"].T, *found["rows"])
        lines[rows, cols] = True
    if found["cols"] is not None:
        rows, cols = _line_pixels(mask.T, band_pixels["rows"].T, *found["cols"])
        lines.T[rows, cols] = True
    if strength is not None and lines.any():
        # A line's own ink, at its darkest, is its level: much darker is a stroke over it.
        lines &= strength < 1.5 * float(np.percentile(strength[lines], 90))
    lines &= final
    cleaned = final & ~lines
    if cleaned.sum() < 0.02 * final.sum():  # nothing but lines: they were the drawing
        return final, np.zeros_like(final)
    return cleaned, lines


def find_ink(gray: np.ndarray) -> Ink:
    """Stages 1-4 on a float32 grayscale image: flattened ink, its mask, lines removed."""
    strength, dark_ink, noise = flatten(gray)
    mask, faint = threshold(strength, noise)
    cleaned, lines = remove_lines(mask, faint, strength)
    return Ink(gray, strength, cleaned, lines, dark_ink)


# --- stage 5: components ---------------------------------------------------------------------

@dataclass
class Part:
    """A connected piece of ink: its label, mass (summed strength), box and pixel count."""

    label: int
    mass: float
    top: int
    left: int
    bottom: int  # exclusive
    right: int  # exclusive
    inside: bool = True  # clear of the image border
    contrast: float = 1.0  # mean strength: strokes are strong, a shadow's rim is faint

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def parts(ink: Ink) -> tuple[np.ndarray, list[Part]]:
    """Connected pieces of ink, without specks and without pieces that run along the image
    border (the edge of the sheet, the table beyond it, a shadow's rim)."""
    labels, count = ndimage.label(ink.mask, _EIGHT)
    if count == 0:
        return labels, []
    index = np.arange(1, count + 1)
    masses = ndimage.sum_labels(ink.strength, labels, index)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = ndimage.find_objects(labels)
    h, w = ink.mask.shape
    border = np.zeros_like(ink.mask)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    on_border = np.bincount(labels[border], minlength=count + 1)[1:]
    found, slivers = [], []
    for label, mass, size, box, touching in zip(index, masses, sizes, boxes, on_border):
        tall, wide = box[0].stop - box[0].start, box[1].stop - box[1].start
        if touching > 0.15 * min(h, w) or max(tall, wide) > 0.97 * max(h, w):
            continue
        part = Part(int(label), float(mass), box[0].start, box[1].start, box[0].stop,
                    box[1].stop, inside=touching == 0, contrast=float(mass / max(size, 1)))
        # What is left of a line or of the sheet's edge: long along one side, thin across.
        sliver = ((wide >= 0.75 * w and tall <= 0.15 * h) or (tall >= 0.75 * h and wide <= 0.15 * w)
                  or (touching > 0 and max(tall, wide) >= 0.3 * max(h, w)
                      and max(tall, wide) >= 4 * min(tall, wide)))
        (slivers if sliver else found).append(part)
    found = found or slivers  # a lone "1" filling the picture is still a digit
    if not found:
        return labels, []
    biggest = max(p.mass for p in found)
    return labels, [p for p in found if p.mass >= 0.02 * biggest]


def _gap(a: Part, b: Part) -> float:
    dy = max(0, max(a.top, b.top) - min(a.bottom, b.bottom))
    dx = max(0, max(a.left, b.left) - min(a.right, b.right))
    return float(np.hypot(dy, dx))


def _union(pieces: list[Part]) -> Part:
    return Part(pieces[0].label, sum(p.mass for p in pieces), min(p.top for p in pieces),
                min(p.left for p in pieces), max(p.bottom for p in pieces),
                max(p.right for p in pieces))


def isolate(found: list[Part]) -> list[Part]:
    """The digit's pieces: the heaviest piece and those close to it (a "5"'s flag, a "4" in
    two strokes, a broken line), without far-away blobs or faint ones (a shadow beside it)."""
    main = max(found, key=lambda p: p.mass * (1.0 if p.inside else 0.3))
    group = [main]
    grown = True
    while grown:
        grown = False
        whole = _union(group)
        reach = 0.35 * max(whole.height, whole.width)
        for p in found:
            if (p not in group and p.mass >= 0.03 * main.mass and _gap(whole, p) <= reach
                    and p.contrast >= FAINT * main.contrast):
                group.append(p)
                grown = True
    return group


# --- stages 6-7: stroke width and the 28x28 field --------------------------------------------

def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width in pixels: twice the median distance from the stroke's centre
    line (the ridge of the distance transform) to its edge."""
    depth = ndimage.distance_transform_edt(mask)
    ridge = mask & (depth >= ndimage.maximum_filter(depth, size=3))
    if not ridge.any():
        return 0.0
    return max(2 * float(np.median(depth[ridge])) - 1, 1.0)


def draw_crop(strength: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ink inside `mask`'s box as MNIST-like coverage in [0, 1], strokes thinner than
    MNIST's (relative to the digit's size) thickened, and bolder ones thinned."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    pad = 2
    top, bottom = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, mask.shape[0])
    left, right = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, mask.shape[1])
    m = mask[top:bottom, left:right]
    s = strength[top:bottom, left:right]
    core = float(np.percentile(s[m], 90)) if m.any() else 1.0
    near = ndimage.binary_dilation(m, _EIGHT, iterations=1)
    coverage = np.where(near, np.clip(s / max(core, 1e-6), 0, 1), 0.0)
    coverage = np.maximum(coverage, m * 0.999)
    size = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    at_20 = BOX / size  # pixels of the 20-pixel box per pixel here
    width = stroke_width(m)
    if width * at_20 < THIN_STROKE:
        radius = (TARGET_STROKE / at_20 - width) / 2
        away = ndimage.distance_transform_edt(~m)
        coverage = np.maximum(coverage, np.clip(radius + 0.5 - away, 0, 1))
    elif width * at_20 > BOLD_STROKE:
        # Peel the edge off evenly: keep what lies deeper than the excess half-width.
        excess = (width - BOLD_TARGET / at_20) / 2
        depth = ndimage.distance_transform_edt(m)
        coverage = np.minimum(coverage, np.clip(depth - excess + 0.5, 0, 1))
    # Trim back to the (possibly thickened) ink.
    ink_rows = np.flatnonzero(coverage.max(axis=1) > 0.2)
    ink_cols = np.flatnonzero(coverage.max(axis=0) > 0.2)
    return coverage[ink_rows[0]:ink_rows[-1] + 1, ink_cols[0]:ink_cols[-1] + 1]


def group_mask(labels: np.ndarray, group: list[Part]) -> np.ndarray:
    """The pixels of a group of pieces, as a mask the size of the image."""
    whole = _union(group)
    window = (slice(whole.top, whole.bottom), slice(whole.left, whole.right))
    full = np.zeros(labels.shape, bool)
    full[window] = np.isin(labels[window], [p.label for p in group])
    return full


def strokes_only(strength: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`mask` without dim ink away from the strokes. A shadow or a dim band that touches a
    stroke is one component with it, but is weaker than half the strokes' core and lies far
    from any pixel that strong, while a stroke's soft edge lies within EDGE pixels of its
    core and a bold stroke's dim middle (the paper level misjudged under a wide blob) is
    enclosed by it. What comes apart is kept only in pieces of at least 3% of the mass."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    m, s = mask[window], strength[window]
    strong = m & (s >= CORE * float(np.percentile(s[m], 98)))
    near = ndimage.distance_transform_edt(~strong) <= EDGE
    labels, count = ndimage.label(m & ndimage.binary_fill_holes(near), _EIGHT)
    if count == 0:
        return mask
    masses = ndimage.sum_labels(s, labels, np.arange(1, count + 1))
    kept = np.zeros_like(mask)
    kept[window] = np.isin(labels, 1 + np.flatnonzero(masses >= 0.03 * masses.max()))
    return kept


def digit_from_mask(ink: Ink, mask: np.ndarray) -> Digit:
    """The digit whose ink is `mask`, drawn into its 28x28 field."""
    mask = strokes_only(ink.strength, mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    crop = draw_crop(ink.strength, mask)
    return Digit(place_in_field(crop), box, crop, ink, mask)


NO_INK = "no ink found (the image is blank or has no contrast)"


def prepare_digit(gray: np.ndarray) -> Digit:
    """One handwritten digit in a photo or scan (float grayscale in [0, 1]) as a 28x28
    MNIST-style field. Raises UsageError when there is no ink."""
    ink = find_ink(np.asarray(gray, np.float32))
    labels, found = parts(ink)
    if not found:
        raise UsageError(NO_INK)
    return digit_from_mask(ink, group_mask(labels, isolate(found)))


# --- whole numbers ---------------------------------------------------------------------------

Classify = Callable[[np.ndarray], np.ndarray]  # (n, 28, 28) fields -> (n, 10) probabilities


def columns(found: list[Part]) -> list[list[Part]]:
    """Pieces grouped into digits left to right: pieces that share most of their columns
    (a "5"'s flag over its body, a "4"'s two strokes) are one digit."""
    groups: list[list[Part]] = []
    for p in sorted(found, key=lambda p: p.left):
        for group in groups:
            if _same_digit(_union(group), p):
                group.append(p)
                break
        else:
            groups.append([p])
    merged = True
    while merged:  # a piece added late can make two groups overlap
        merged = False
        groups.sort(key=lambda g: _union(g).left)
        for i in range(len(groups) - 1):
            if _same_digit(_union(groups[i]), _union(groups[i + 1])):
                groups[i] += groups.pop(i + 1)
                merged = True
                break
    return groups


def attach_fragments(groups: list[list[Part]], height: float) -> list[list[Part]]:
    """Groups too flat to be a digit of a row `height` tall (a "5"'s flag drawn apart from
    its body and reaching over the next digit, the broken end of a stroke) join the nearest
    digit, the one on the left if both touch; far from every digit, they are specks."""
    digits = [g for g in groups if _union(g).height >= FRAGMENT * height]
    if not digits:
        return groups
    for fragment in (g for g in groups if _union(g).height < FRAGMENT * height):
        piece = _union(fragment)
        gaps = [_gap(_union(g), piece) for g in digits]
        nearest = int(np.argmin(gaps))  # the first, leftmost, of equals
        if gaps[nearest] <= ATTACH_GAP * height:
            digits[nearest] = digits[nearest] + fragment
    return digits


def _same_digit(a: Part, b: Part) -> bool:
    """Pieces of one digit share most of their columns; two neighbours (two slanted "1"s)
    share some, and are alike in size, so they need to share nearly all."""
    overlap = min(a.right, b.right) - max(a.left, b.left)
    narrower = min(a.width, b.width)
    alike = min(a.mass, b.mass) > 0.5 * max(a.mass, b.mass)
    return overlap > (0.75 if alike else 0.4) * narrower


def _cuts(mask: np.ndarray, height: float) -> list[int]:
    """Candidate columns to split touching digits: the local minima of the column projection
    (the thinnest joins), at most one per eighth of a digit's height, none at the edges."""
    profile = ndimage.uniform_filter1d(mask.sum(axis=0).astype(np.float32), 3)
    width, margin, apart = len(profile), max(int(MIN_DIGIT * height), 1), max(int(height / 8), 1)
    lowest = ndimage.minimum_filter1d(profile, 2 * apart + 1, mode="nearest")
    inner = np.arange(margin, width - margin)
    candidates = inner[profile[inner] <= lowest[inner]]
    picked: list[int] = []
    for c in candidates[np.argsort(profile[candidates], kind="stable")]:
        if all(abs(int(c) - q) > apart for q in picked):
            picked.append(int(c))
        if len(picked) == MAX_CUTS:
            break
    return sorted(picked)


def read_digits(gray: np.ndarray, classify: Classify, max_digits: int = 32) -> list[Digit]:
    """A row of handwritten digits read left to right. Touching digits are split where the
    network is surer of them apart than together (cut at the column projection's minima)."""
    ink = find_ink(np.asarray(gray, np.float32))
    labels, found = parts(ink)
    if not found:
        raise UsageError(NO_INK)
    groups = columns(found)
    height = float(np.median([_union(g).height for g in groups]))
    digits: list[Digit] = []
    for group in attach_fragments(groups, height):
        digits += _split(ink, group_mask(labels, group), classify, height)
        if len(digits) >= max_digits:
            break
    if not digits:
        raise UsageError(NO_INK)
    return digits[:max_digits]


def _reading_scores(probabilities: np.ndarray, digits: list[Digit], height: float
                    ) -> np.ndarray:
    """How well each piece reads as one digit of a row `height` tall: the network's
    log-confidence plus the log-likelihood of its height, when taller than the row's digits. The
    network alone is often sure of two touching digits as one ("96" as a 4), but two digits
    side by side, a little up and down, are taller together than either is; a digit shorter
    than its neighbours is not penalised, as all ways of cutting it are as short."""
    taller = np.array([(d.box[3] - d.box[1]) / height - 1.0 for d in digits], np.float32)
    shape = -0.5 * (np.maximum(taller, 0.0) / TALLER) ** 2
    return np.log(np.maximum(probabilities.max(axis=1), 1e-12)) + shape


def _split(ink: Ink, mask: np.ndarray, classify: Classify, height: float) -> list[Digit]:
    """The digit(s) in `mask`, a piece of the row: the way of cutting it at candidate columns
    into digits of a plausible width and height whose `_reading_scores`, less SPLIT_COST per
    digit, sum highest (so one digit beats two unless both halves read better), found by
    dynamic programming over the cuts. Only a piece wider than SPLIT_WIDTH heights is cut:
    narrower pieces ("1", "7") are a single digit."""
    single = digit_from_mask(ink, mask)
    left, top, right, bottom = single.box
    if right - left < SPLIT_WIDTH * height:
        return [single]
    window = mask[top:bottom, left:right]
    points = [0] + _cuts(window, height) + [right - left]
    pieces: dict[tuple[int, int], Digit] = {}
    for i in range(len(points) - 1):
        for j in range(i + 1, len(points)):
            span = points[j] - points[i]
            if span > MAX_DIGIT * height or span < MIN_DIGIT * height:
                continue
            if (i, j) == (0, len(points) - 1):
                pieces[i, j] = single
                continue
            stretch = window[:, points[i]:points[j]]
            rows = np.flatnonzero(stretch.any(axis=1))
            if len(rows) and rows[-1] - rows[0] + 1 >= FRAGMENT * height:  # else no digit
                part = np.zeros_like(mask)
                part[top:bottom, left + points[i]:left + points[j]] = stretch
                pieces[i, j] = digit_from_mask(ink, part)
    if not pieces:
        return [single]
    keys = list(pieces)
    sure = _reading_scores(classify(np.stack([pieces[k].field for k in keys])),
                           [pieces[k] for k in keys], height)
    score = {k: v - SPLIT_COST for k, v in zip(keys, sure)}
    best: list[tuple[float, list[tuple[int, int]]]] = [(0.0, [])] + [(-np.inf, [])] * (len(points) - 1)
    for j in range(1, len(points)):
        for i in range(j):
            if (i, j) in score and best[i][0] + score[i, j] > best[j][0]:
                best[j] = (best[i][0] + score[i, j], best[i][1] + [(i, j)])
    return [pieces[k] for k in best[-1][1]] or [single]
