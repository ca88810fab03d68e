"""A picture of what the preparation did to one image, so a misread digit can be understood.

One PNG per image, drawn with Pillow alone: the image as read (upright, with the digit's
box), the ink after flattening, the ink mask (printed lines taken out in red, the digit in
green, other ink grey), the crop, the 28x28 input as the network saw it, and the top three
probabilities. For a number, every digit's 28x28 input and top three are shown in a row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nnctl.errors import UsageError

PANEL = 200
TITLE = 22
GREEN, RED, GREY = (40, 200, 90), (230, 60, 50), (110, 110, 110)


def output_path(folder: Path, image: Path) -> Path:
    """Where the explanation of `image` goes: FOLDER/NAME-explain.png."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{folder}: cannot create the --explain folder "
                         f"({error.strerror or error})") from None
    return folder / f"{Path(image).stem}-explain.png"


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1 has one bitmap size
        return ImageFont.load_default()


def _gray_panel(values: np.ndarray, resample=Image.Resampling.BILINEAR) -> Image.Image:
    image = Image.fromarray((np.clip(values, 0, 1) * 255).astype(np.uint8), "L").convert("RGB")
    scale = PANEL / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, resample)


def _mask_panel(ink, digit_masks: list[np.ndarray]) -> Image.Image:
    rgb = np.zeros(ink.mask.shape + (3,), np.uint8)
    rgb[ink.mask] = GREY
    rgb[ink.lines] = RED
    for mask in digit_masks:
        rgb[mask] = GREEN
    image = Image.fromarray(rgb, "RGB")
    scale = PANEL / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BOX)


def _original_panel(gray: np.ndarray, boxes: list[tuple[int, int, int, int]],
                    labels: list[str]) -> Image.Image:
    panel = _gray_panel(gray)
    scale = panel.width / gray.shape[1]
    draw = ImageDraw.Draw(panel)
    for box, label in zip(boxes, labels):
        left, top, right, bottom = (v * scale for v in box)
        draw.rectangle((left, top, right, bottom), outline=GREEN, width=2)
        if label:
            draw.text((left + 2, max(0, top - 16)), label, fill=GREEN, font=_font(14))
    return panel


def _top3(probabilities: np.ndarray, width: int = PANEL) -> Image.Image:
    panel = Image.new("RGB", (width, 80), "white")
    draw = ImageDraw.Draw(panel)
    for row, digit in enumerate(np.argsort(probabilities)[::-1][:3]):
        p = float(probabilities[digit])
        y = 6 + row * 24
        draw.text((6, y), f"{digit}", fill="black", font=_font(16))
        draw.rectangle((26, y + 3, 26 + (width - 100) * p, y + 15), fill=GREEN if row == 0 else GREY)
        draw.text((width - 68, y), f"{100 * p:5.1f}%", fill="black", font=_font(14))
    return panel


def _sheet(panels: list[tuple[str, Image.Image]], columns: int) -> Image.Image:
    rows = (len(panels) + columns - 1) // columns
    cell_h = max(p.height for _, p in panels) + TITLE + 6
    sheet = Image.new("RGB", (columns * (PANEL + 10) + 10, rows * cell_h + 10), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (title, panel) in enumerate(panels):
        x = 10 + (index % columns) * (PANEL + 10)
        y = 10 + (index // columns) * cell_h
        draw.text((x, y), title, fill="black", font=_font(14))
        sheet.paste(panel, (x, y + TITLE))
    return sheet


def _save(sheet: Image.Image, path: Path) -> None:
    partial = path.with_name(f".{path.name}.part")
    try:
        sheet.save(partial, "PNG")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write the explanation ({error.strerror or error})") from None


def explain_digit(path: Path, loaded, digit, pixels: np.ndarray, probabilities: np.ndarray
                  ) -> Path:
    """Write the stages of one digit's preparation and its top three to `path` (PNG)."""
    label = str(int(np.argmax(probabilities)))
    if digit is None:  # a 28x28 image taken as it is
        panels = [("image as read", _gray_panel(loaded.gray, Image.Resampling.NEAREST))]
    else:
        ink = digit.ink
        panels = [("image as read", _original_panel(loaded.gray, [digit.box], [label])),
                  ("ink, light flattened", _gray_panel(ink.strength / max(
                      float(np.percentile(ink.strength[ink.mask], 90)) if ink.mask.any() else 1.0,
                      1e-6))),
                  ("mask: digit, lines removed", _mask_panel(ink, [digit.mask])),
                  ("crop", _gray_panel(digit.crop))]
    panels.append(("28x28 input", _gray_panel(pixels.reshape(28, 28), Image.Resampling.NEAREST)))
    panels.append((f"read as {label}", _top3(probabilities)))
    sheet = _sheet(panels, columns=3)
    _save(sheet, path)
    return path


def explain_number(path: Path, loaded, digits, readings) -> Path:
    """Write a number's reading: the boxes, the mask, then each digit's input and top three."""
    ink = digits[0].ink
    labels = [str(r.label) for r in readings]
    panels = [("image as read", _original_panel(loaded.gray, [d.box for d in digits], labels)),
              ("mask: digits, lines removed", _mask_panel(ink, [d.mask for d in digits])),
              ("", Image.new("RGB", (1, 1), "white"))]
    for index, (digit, reading) in enumerate(zip(digits, readings)):
        cell = Image.new("RGB", (PANEL, PANEL), "white")
        cell.paste(_gray_panel(reading.pixels.reshape(28, 28), Image.Resampling.NEAREST)
                   .resize((112, 112), Image.Resampling.NEAREST), (44, 0))
        cell.paste(_top3(reading.probabilities), (0, 116))
        panels.append((f"digit {index + 1}: {reading.label}", cell))
    _save(_sheet(panels, columns=3), path)
    return path
