"""How well `nnctl predict` reads digits photographed or scanned in the wild.

    python benchmarks/wild.py [--quick] [--n N] [--rows N] [--json PATH] [--weights PATH] [--data-dir DIR]

MNIST **test** digits (never training ones, fixed seed) are rendered as realistic photos and
scans, one capture condition at a time: upscaled 8-40x, the stroke as MNIST's, thinned to a
ballpoint line or thickened to a marker, on white, cream, grey or coloured paper, on squared
or ruled paper, across the edge of the sheet, under a lighting gradient or a soft shadow,
blurred, with sensor noise, JPEG-compressed, rotated, off-centre, light on dark, stored
sideways with an EXIF orientation tag, and all of it at once ("phone-photo"). Each image is
written to a file and read back by the code path `nnctl predict` runs (`predict_files`), so
decoding counts too. Accuracy per condition is shown next to the clean accuracy of the same
digits as 28x28 MNIST inputs. Rows of 2-6 digits are read with `--number`'s code path.

--weights picks the model; by default configs/mnist.yaml's model is trained once and cached
under DATA_DIR/wild/. --quick renders 6 digits per condition and 4 rows per length.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "mnist.yaml"
SEED = 20260
ROW_LENGTHS = (2, 3, 4, 5, 6)


@dataclass
class Page:
    """A capture being built: an RGB float32 canvas in [0, 1] and how to save it."""

    rgb: np.ndarray
    paper: np.ndarray
    fmt: str = "PNG"
    quality: int = 95
    exif_orientation: int = 1

    def save(self, path: Path) -> None:
        image = Image.fromarray((np.clip(self.rgb, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
        if self.exif_orientation != 1:
            # Stored as a sensor writes it; the tag says how to turn it for display.
            undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                    8: Image.Transpose.ROTATE_270}[self.exif_orientation]
            image = image.transpose(undo)
            exif = Image.Exif()
            exif[0x0112] = self.exif_orientation
            image.save(path, "JPEG", quality=self.quality, exif=exif)
        elif self.fmt == "JPEG":
            image.save(path, "JPEG", quality=self.quality)
        else:
            image.save(path, "PNG", compress_level=0)


# --- the pen: a 28x28 MNIST digit as ink coverage at a photo's scale -------------------------

def upscale(digit: np.ndarray, scale: float) -> np.ndarray:
    """The 28x28 digit (0..255) as a smooth [0, 1] field scale times larger."""
    side = max(28, round(28 * scale))
    image = Image.fromarray(digit.astype(np.float32) / 255.0, "F")
    return np.asarray(image.resize((side, side), Image.Resampling.BICUBIC), np.float32)


def pen(digit: np.ndarray, scale: float, style: str, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage in [0, 1]: "mnist" keeps MNIST's stroke, "thin" redraws it along its
    centre line with a ballpoint a few pixels wide, "bold" thickens it like a marker."""
    field = upscale(digit, scale)
    if style == "mnist":
        edge = max(1.0, scale / 4)  # the anti-aliased rim, a pixel or two wide
        return np.clip((field - 0.5) * (scale / edge) + 0.5, 0, 1)
    inside = field > 0.5
    if style == "bold":
        radius = scale * rng.uniform(0.8, 1.6)
        outside = ndimage.distance_transform_edt(~inside)
        return np.clip(radius + 0.5 - outside, 0, 1).astype(np.float32)
    depth = ndimage.distance_transform_edt(inside)
    ridge = inside & (depth >= ndimage.maximum_filter(depth, size=3) - 0.75)
    radius = rng.uniform(1.0, 2.5)
    away = ndimage.distance_transform_edt(~ridge)
    return np.clip(radius + 0.5 - away, 0, 1).astype(np.float32)


# --- the page --------------------------------------------------------------------------------

PAPERS = {
    "white": ((0.93, 0.93, 0.92), (0.08, 0.08, 0.15)),
    "cream": ((0.96, 0.91, 0.76), (0.10, 0.10, 0.30)),
    "grey": ((0.40, 0.40, 0.40), (0.07, 0.07, 0.09)),
    "blue": ((0.68, 0.82, 0.95), (0.10, 0.12, 0.45)),
    "yellow": ((0.98, 0.88, 0.45), (0.15, 0.10, 0.10)),
    "pink": ((0.97, 0.75, 0.80), (0.05, 0.05, 0.25)),
    "green": ((0.70, 0.90, 0.70), (0.10, 0.10, 0.10)),
    "board": ((0.16, 0.22, 0.19), (0.90, 0.90, 0.85)),
}


def compose(coverage: np.ndarray, rng: np.random.Generator, paper: str = "white",
            margin: tuple[float, float] = (0.15, 0.5), corner: bool = False) -> Page:
    """The ink laid on paper in a canvas with a margin around it (or near a corner)."""
    paper_rgb, ink_rgb = (np.array(c, np.float32) for c in PAPERS[paper])
    paper_rgb = np.clip(paper_rgb * rng.uniform(0.95, 1.03), 0, 1)
    h, w = coverage.shape
    if corner:
        height, width = int(h * rng.uniform(2.2, 2.8)), int(w * rng.uniform(2.2, 2.8))
        top = int(rng.choice([0.05, 0.6]) * height + rng.uniform(0, 0.1) * height)
        left = int(rng.choice([0.05, 0.6]) * width + rng.uniform(0, 0.1) * width)
        top, left = min(top, height - h), min(left, width - w)
    else:
        m = rng.uniform(*margin, size=4)
        top, bottom, left, right = (int(v * s) for v, s in zip(m, (h, h, w, w)))
        height, width = h + top + bottom, w + left + right
    alpha = np.zeros((height, width), np.float32)
    alpha[top:top + h, left:left + w] = coverage * rng.uniform(0.85, 1.0)
    rgb = paper_rgb + alpha[..., None] * (ink_rgb - paper_rgb)
    return Page(rgb.astype(np.float32), paper_rgb)


def _line_coverage(shape, angle: float, spacing: float, width: float, offset: float,
                   vertical: bool = False) -> np.ndarray:
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    if vertical:
        ys, xs = xs, ys
    along = ys * np.cos(angle) - xs * np.sin(angle) - offset
    distance = np.abs((along + spacing / 2) % spacing - spacing / 2)
    return np.clip(width / 2 + 0.5 - distance, 0, 1)


def add_lines(page: Page, rng: np.random.Generator, digit_height: float, grid: bool) -> None:
    """Printed squares or ruling, slightly off the image's axes, in pale blue or grey."""
    h, w = page.rgb.shape[:2]
    angle = np.deg2rad(rng.uniform(-3, 3))
    spacing = digit_height * (rng.uniform(0.45, 0.8) if grid else rng.uniform(1.1, 1.5))
    width = max(1.0, digit_height * rng.uniform(0.01, 0.03))
    colour = np.array(rng.choice([(0.55, 0.7, 0.9), (0.6, 0.6, 0.6), (0.5, 0.75, 0.8)]), np.float32)
    strength = rng.uniform(0.5, 0.9)
    cover = _line_coverage((h, w), angle, spacing, width, rng.uniform(0, spacing))
    if grid:
        cover = np.maximum(cover, _line_coverage((h, w), angle, spacing, width,
                                                 rng.uniform(0, spacing), vertical=True))
    a = (cover * strength)[..., None]
    # Printed lines lie under the ink: darken the paper multiplicatively.
    page.rgb *= 1 - a * (1 - colour)


def add_sheet_edge(page: Page, rng: np.random.Generator) -> None:
    """The sheet ends a little inside one side of the picture; a darker table shows beyond."""
    h, w = page.rgb.shape[:2]
    side = rng.integers(4)
    angle = np.deg2rad(rng.uniform(-4, 4))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if side in (0, 1):  # left or right edge
        coordinate, extent = xs - (ys - h / 2) * np.tan(angle), w
    else:
        coordinate, extent = ys - (xs - w / 2) * np.tan(angle), h
    cut = extent * rng.uniform(0.03, 0.08)
    beyond = (coordinate < cut) if side in (0, 2) else (coordinate > extent - cut)
    table = np.array(rng.choice([(0.25, 0.2, 0.15), (0.35, 0.35, 0.38), (0.1, 0.1, 0.1)]), np.float32)
    page.rgb[beyond] = table


def add_gradient(page: Page, rng: np.random.Generator) -> None:
    h, w = page.rgb.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xs / w - 0.5) * np.cos(angle) + (ys / h - 0.5) * np.sin(angle)
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    page.rgb *= (1 - rng.uniform(0.35, 0.6) * ramp)[..., None]


def add_shadow(page: Page, rng: np.random.Generator) -> None:
    """A soft shadow (a hand, a phone) over one side of the picture."""
    h, w = page.rgb.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    along = (xs - w / 2) * np.cos(angle) + (ys - h / 2) * np.sin(angle)
    reach = np.abs(along).max()
    edge = reach * rng.uniform(0.3, 0.6)
    softness = reach * rng.uniform(0.05, 0.15)
    shade = 1 / (1 + np.exp(-(along - edge) / softness))
    page.rgb *= (1 - rng.uniform(0.35, 0.55) * shade)[..., None]


def add_blur(page: Page, rng: np.random.Generator, scale: float) -> None:
    sigma = scale * rng.uniform(0.15, 0.4)
    page.rgb = ndimage.gaussian_filter(page.rgb, (sigma, sigma, 0))


def add_noise(page: Page, rng: np.random.Generator, level: tuple[float, float] = (0.03, 0.08)) -> None:
    page.rgb += rng.normal(0, rng.uniform(*level), page.rgb.shape).astype(np.float32)


def rotate(page: Page, rng: np.random.Generator, degrees: float = 12) -> None:
    image = Image.fromarray((np.clip(page.rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    fill = tuple(int(v * 255) for v in page.paper)
    turned = image.rotate(rng.uniform(-degrees, degrees), Image.Resampling.BILINEAR,
                          fillcolor=fill)
    page.rgb = np.asarray(turned, np.float32) / 255


# --- the conditions --------------------------------------------------------------------------

def _single(style="mnist", paper="white", corner=False):
    def make(digit, scale, rng):
        return compose(pen(digit, scale, style, rng), rng, paper, corner=corner)
    return make


def _with(effect: Callable, base: Callable | None = None, **options):
    base = base or _single(**options)

    def make(digit, scale, rng):
        page = base(digit, scale, rng)
        effect(page, rng, scale)
        return page
    return make


def _jpeg(page, rng, scale):
    page.fmt, page.quality = "JPEG", int(rng.integers(20, 50))


def _exif(page, rng, scale):
    page.exif_orientation = int(rng.choice([3, 6, 8]))


def _paper_colour(digit, scale, rng):
    paper = str(rng.choice(["blue", "yellow", "pink", "green"]))
    return compose(pen(digit, scale, "mnist", rng), rng, paper)


def _phone_photo(digit, scale, rng):
    """Everything a hurried phone photo brings, each effect milder than alone."""
    style = str(rng.choice(["mnist", "thin"]))
    page = compose(pen(digit, scale, style, rng), rng, str(rng.choice(["white", "cream"])))
    if rng.random() < 0.5:
        add_lines(page, rng, 20 * scale, grid=bool(rng.random() < 0.5))
    rotate(page, rng, 6)  # the sheet turned under the camera, then lit
    add_gradient(page, rng)
    if rng.random() < 0.5:
        add_shadow(page, rng)
    add_blur(page, rng, scale / 2)
    add_noise(page, rng, (0.02, 0.05))
    page.fmt, page.quality = "JPEG", int(rng.integers(40, 80))
    return page


CONDITIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], Page]] = {
    "white-paper": _single(),
    "thin-pen": _single("thin"),
    "bold-marker": _single("bold"),
    "cream-paper": _single(paper="cream"),
    "grey-paper": _single(paper="grey"),
    "coloured-paper": _paper_colour,
    "grid-paper": _with(lambda p, r, s: add_lines(p, r, 20 * s, grid=True)),
    "ruled-paper": _with(lambda p, r, s: add_lines(p, r, 20 * s, grid=False)),
    "sheet-edge": _with(lambda p, r, s: add_sheet_edge(p, r)),
    "lighting-gradient": _with(lambda p, r, s: add_gradient(p, r)),
    "soft-shadow": _with(lambda p, r, s: add_shadow(p, r)),
    "blur": _with(add_blur),
    "sensor-noise": _with(lambda p, r, s: add_noise(p, r)),
    "jpeg": _with(_jpeg),
    "rotation": _with(lambda p, r, s: rotate(p, r)),
    "off-centre": _single(corner=True),
    "light-on-dark": _single(paper="board"),
    "exif-rotated": _with(_exif),
    "phone-photo": _phone_photo,
}


def render(condition: str, digit: np.ndarray, rng: np.random.Generator,
           scale: float | None = None) -> Page:
    """One MNIST digit (28x28 uint8) captured under a condition, at scale 8-40 by default."""
    return CONDITIONS[condition](digit, scale or rng.uniform(8, 40), rng)


def render_row(digits: list[np.ndarray], rng: np.random.Generator,
               scale: float | None = None) -> Page:
    """Digits written left to right with gaps of -1..5 MNIST pixels (some touch), a little
    up and down, on white or cream paper, lightly noisy, as a JPEG."""
    scale = scale or rng.uniform(6, 14)
    pieces = []
    for digit in digits:
        cover = pen(digit, scale, "mnist", rng)
        cols = np.flatnonzero(cover.max(axis=0) > 0.05)
        pieces.append(cover[:, cols[0]:cols[-1] + 1])
    gaps = [round(scale * rng.uniform(-1, 5)) for _ in digits[1:]]
    shifts = [round(scale * rng.uniform(-2, 2)) for _ in digits]
    height = pieces[0].shape[0] + 4 * round(scale)
    width = sum(p.shape[1] for p in pieces) + sum(gaps)
    row = np.zeros((height, width), np.float32)
    x = 0
    for piece, shift, gap in zip(pieces, shifts, [0] + gaps):
        x += gap
        top = min(max(0, 2 * round(scale) + shift), height - piece.shape[0])
        region = row[top:top + piece.shape[0], x:x + piece.shape[1]]
        np.maximum(region, piece, out=region)
        x += piece.shape[1]
    page = compose(row, rng, str(rng.choice(["white", "cream"])), margin=(0.1, 0.3))
    add_noise(page, rng, (0.01, 0.04))
    page.fmt, page.quality = "JPEG", int(rng.integers(60, 90))
    return page


# --- running it ------------------------------------------------------------------------------

def default_weights(data_dir: Path) -> Path:
    """configs/mnist.yaml's model, trained once and cached by the config's content."""
    from nnctl.config import load_config
    from nnctl.experiment import train

    digest = hashlib.sha256(DEFAULT_CONFIG.read_bytes()).hexdigest()[:12]
    path = data_dir / "wild" / f"mnist-{digest}.npz"
    if not path.is_file():
        print(f"training configs/mnist.yaml's model once, cached at {path}", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        train(load_config(DEFAULT_CONFIG), path, data_dir)
    return path


def clean_predictions(checkpoint, images: np.ndarray) -> np.ndarray:
    x = checkpoint.scaler.transform(images.reshape(len(images), -1), checkpoint.network.dtype)
    return np.argmax(checkpoint.network.forward(x), axis=1)


def run_condition(checkpoint, condition: str, digits: np.ndarray, labels: np.ndarray,
                  rng: np.random.Generator, folder: Path) -> dict:
    from nnctl.predict import predict_files

    paths = []
    for index, digit in enumerate(digits):
        page = render(condition, digit.reshape(28, 28), rng)
        path = folder / f"{condition}-{index}.{'jpg' if page.fmt == 'JPEG' or page.exif_orientation != 1 else 'png'}"
        page.save(path)
        paths.append(path)
    results = predict_files(checkpoint, paths)
    for path in paths:
        path.unlink()
    correct = sum(r.label == int(y) for r, y in zip(results, labels))
    no_ink = sum(bool(r.error and "no ink" in r.error) for r in results)
    return {"name": condition, "n": len(digits), "accuracy": correct / len(digits),
            "no_ink": no_ink}


def run_rows(checkpoint, length: int, count: int, images: np.ndarray, labels: np.ndarray,
             rng: np.random.Generator, folder: Path) -> dict | None:
    try:
        from nnctl.predict import predict_numbers
    except ImportError:  # a version of nnctl without --number
        return None
    paths, truths = [], []
    for index in range(count):
        pick = rng.choice(len(images), length, replace=False)
        page = render_row([images[i].reshape(28, 28) for i in pick], rng)
        path = folder / f"row{length}-{index}.jpg"
        page.save(path)
        paths.append(path)
        truths.append("".join(str(int(labels[i])) for i in pick))
    results = predict_numbers(checkpoint, paths)
    for path in paths:
        path.unlink()
    exact = sum(r.number == truth for r, truth in zip(results, truths))
    return {"digits": length, "n": count, "exact": exact / count}


def photo_seconds(weights: Path, folder: Path, digit: np.ndarray, repeats: int = 3) -> dict:
    """Whole-process time of `nnctl predict` on one 4000x3000 phone-style JPEG (median of
    `repeats`), next to `nnctl --help` timed in the same rounds."""
    import statistics
    import subprocess

    rng = np.random.default_rng(SEED)
    cover = pen(digit, 60, "thin", rng)
    page = Page(np.zeros((3000, 4000, 3), np.float32), np.array(PAPERS["white"][0], np.float32))
    alpha = np.zeros((3000, 4000), np.float32)
    alpha[1500 - cover.shape[0] // 2:1500 + (cover.shape[0] + 1) // 2,
          2000 - cover.shape[1] // 2:2000 + (cover.shape[1] + 1) // 2] = cover
    paper, ink = (np.array(c, np.float32) for c in PAPERS["white"])
    page.rgb = paper + alpha[..., None] * (ink - paper)
    add_gradient(page, rng)
    add_noise(page, rng, (0.02, 0.03))
    page.fmt, page.quality = "JPEG", 85
    path = folder / "photo-4000x3000.jpg"
    page.save(path)
    commands = {"predict_s": [sys.executable, "-m", "nnctl", "predict", str(path), "--weights",
                              str(weights), "--json"],
                "help_s": [sys.executable, "-m", "nnctl", "--help"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - started)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few digits per condition")
    parser.add_argument("--n", type=int, default=None,
                        help="digits per condition (default 500; 6 with --quick)")
    parser.add_argument("--rows", type=int, default=None,
                        help="rows per length 2-6 (default 200; 4 with --quick)")
    parser.add_argument("--lengths", type=int, nargs="+", default=ROW_LENGTHS,
                        choices=ROW_LENGTHS, help="row lengths to run (default: 2 to 6)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--weights", type=Path, help="the model (default: configs/mnist.yaml's)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--only", nargs="*", help="run only these conditions")
    parser.add_argument("--no-photo", action="store_true",
                        help="skip timing `nnctl predict` on a 4000x3000 photo")
    args = parser.parse_args()
    from nnctl import weights as weights_file
    from nnctl.data.mnist import load_mnist, resolve_data_dir

    started = time.perf_counter()
    data_dir = resolve_data_dir(args.data_dir)
    checkpoint = weights_file.load(args.weights or default_weights(data_dir))
    mnist = load_mnist(data_dir)
    n = args.n or (6 if args.quick else 500)
    rows = args.rows if args.rows is not None else (4 if args.quick else 200)
    rng = np.random.default_rng(SEED)
    pick = rng.choice(len(mnist.test_images), n, replace=False)
    images, labels = mnist.test_images[pick], mnist.test_labels[pick]
    clean = float(np.mean(clean_predictions(checkpoint, images) == labels))
    results = {"clean_accuracy": clean, "conditions": [], "numbers": None, "rows": []}
    print(f"{'condition':<20}{'n':>6}{'accuracy':>10}{'of clean':>10}{'no ink':>8}")
    print(f"{'clean 28x28':<20}{n:>6}{100 * clean:>9.2f}%")
    with tempfile.TemporaryDirectory(prefix="nnctl-wild-") as folder:
        for index, condition in enumerate(CONDITIONS):
            if args.only and condition not in args.only:
                continue
            row = run_condition(checkpoint, condition, images, labels,
                                np.random.default_rng([SEED, index]), Path(folder))
            results["conditions"].append(row)
            print(f"{condition:<20}{row['n']:>6}{100 * row['accuracy']:>9.2f}%"
                  f"{100 * row['accuracy'] / clean:>9.1f}%{row['no_ink']:>8}", flush=True)
        for length in args.lengths if rows else ():
            row = run_rows(checkpoint, length, rows, mnist.test_images, mnist.test_labels,
                           np.random.default_rng([SEED, 100 + length]), Path(folder))
            if row is None:
                print("this nnctl reads no whole numbers: rows skipped")
                break
            results["rows"].append(row)
            if length == 4:
                results["numbers"] = row
            print(f"rows of {length} digits{'':<4}{row['n']:>6}{100 * row['exact']:>9.2f}% exact",
                  flush=True)
    if not args.no_photo:
        with tempfile.TemporaryDirectory(prefix="nnctl-wild-") as folder:
            photo = photo_seconds(args.weights or default_weights(data_dir), Path(folder),
                                  images[0].reshape(28, 28), 1 if args.quick else 3)
        results["photo_4000x3000"] = photo
        print(f"nnctl predict of one 4000x3000 photo, whole process: {photo['predict_s']:.2f} s "
              f"(nnctl --help: {photo['help_s']:.2f} s)")
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"{results['seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
