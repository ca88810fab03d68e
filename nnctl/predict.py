"""Classifying users' image files with a trained network, one result (or error) per file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from nnctl.errors import UsageError
from nnctl.imaging import load_image, prepare_loaded
from nnctl.weights import Checkpoint


@dataclass(frozen=True)
class Prediction:
    file: Path
    label: int | None = None
    probabilities: np.ndarray | None = None
    pixels: np.ndarray | None = None  # the 784 inputs as the network saw them
    error: str | None = None

    def as_dict(self) -> dict:
        if self.error:
            return {"file": str(self.file), "error": self.error}
        return {"file": str(self.file), "label": self.label,
                "probabilities": [round(float(p), 6) for p in self.probabilities]}


@dataclass(frozen=True)
class DigitReading:
    """One digit of a number: its label, probabilities, box (left, top, right, bottom) in
    the file's pixels, and the 784 inputs the network saw."""

    label: int
    probabilities: np.ndarray
    box: tuple[int, int, int, int]
    pixels: np.ndarray

    def as_dict(self) -> dict:
        return {"label": self.label, "confidence": round(float(self.probabilities[self.label]), 6),
                "box": list(self.box),
                "probabilities": [round(float(p), 6) for p in self.probabilities]}


@dataclass(frozen=True)
class NumberReading:
    file: Path
    digits: list[DigitReading] = field(default_factory=list)
    error: str | None = None

    @property
    def number(self) -> str | None:
        return None if self.error else "".join(str(d.label) for d in self.digits)

    def as_dict(self) -> dict:
        if self.error:
            return {"file": str(self.file), "error": self.error}
        return {"file": str(self.file), "number": self.number,
                "digits": [d.as_dict() for d in self.digits]}


def classifier(checkpoint: Checkpoint) -> Callable[[np.ndarray], np.ndarray]:
    """fields (n, 28, 28) in [0, 1] -> probabilities (n, 10), through the saved scaler."""
    def classify(fields: np.ndarray) -> np.ndarray:
        pixels = np.asarray(fields, np.float64).reshape(len(fields), -1) * 255.0
        return checkpoint.network.forward(
            checkpoint.scaler.transform(pixels, checkpoint.network.dtype))
    return classify


def predict_files(checkpoint: Checkpoint, paths: list[Path], raw: bool = False,
                  explain: Path | None = None) -> list[Prediction]:
    """Prepare each image MNIST-style (or as is, with raw) and classify them in one batch.
    With `explain`, a PNG per image showing each stage is written into that folder."""
    results: list[Prediction | None] = []
    inputs, stages = [], []
    for path in paths:
        try:
            loaded = load_image(path)
            pixels, digit = prepare_loaded(loaded, path, raw)
            inputs.append(checkpoint.scaler.transform(pixels, checkpoint.network.dtype))
            stages.append((loaded, digit))
            results.append(None)  # filled in once the batch is classified
        except UsageError as error:
            results.append(Prediction(path, error=str(error).removeprefix(f"{path}: ")))
    if not inputs:
        return results
    batch = np.stack(inputs)
    outputs = zip(checkpoint.network.forward(batch), batch, stages)
    for index, result in enumerate(results):
        if result is None:
            p, pixels, (loaded, digit) = next(outputs)
            results[index] = Prediction(paths[index], int(np.argmax(p)), p, pixels)
            if explain is not None:
                from nnctl.explain import explain_digit, output_path

                explain_digit(output_path(explain, paths[index]), loaded, digit, pixels, p)
    return results


def read_number(checkpoint: Checkpoint, path: Path, explain: Path | None = None
                ) -> NumberReading:
    """A row of handwritten digits in one image, read left to right."""
    from nnctl.handwriting import read_digits

    try:
        loaded = load_image(path)
        digits = read_digits(loaded.gray, classifier(checkpoint))
    except UsageError as error:
        return NumberReading(path, error=str(error).removeprefix(f"{path}: "))
    fields = np.stack([d.field for d in digits])
    pixels = checkpoint.scaler.transform(fields.reshape(len(digits), -1) * 255.0,
                                         checkpoint.network.dtype)
    probabilities = checkpoint.network.forward(pixels)
    readings = []
    for digit, p, x in zip(digits, probabilities, pixels):
        box = tuple(int(round(v * loaded.scale)) for v in digit.box)
        readings.append(DigitReading(int(np.argmax(p)), p, box, x))
    if explain is not None:
        from nnctl.explain import explain_number, output_path

        explain_number(output_path(explain, path), loaded, digits, readings)
    return NumberReading(path, readings)


def predict_numbers(checkpoint: Checkpoint, paths: list[Path], explain: Path | None = None
                    ) -> list[NumberReading]:
    return [read_number(checkpoint, path, explain) for path in paths]
