"""Classifying users' image files with a trained network, one result (or error) per file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from nnctl.data.datasets import Dataset
from nnctl.errors import UsageError
from nnctl.imaging import light_border, load_image, prepare_loaded
from nnctl.weights import Checkpoint

Preparation = Callable[[Path, bool], np.ndarray]


@dataclass(frozen=True)
class Prediction:
    file: Path
    label: int | None = None
    probabilities: np.ndarray | None = None
    pixels: np.ndarray | None = None  # the inputs as the network saw them, (height, width)
    error: str | None = None
    warning: str | None = None
    normalised: bool = True  # a softmax output: the values are probabilities summing to 1
    classes: tuple[str, ...] = ()  # the class names, indexed as the probabilities

    @property
    def kind(self) -> str:
        """What the output values are: probabilities (softmax) or scores (any other output)."""
        return "probabilities" if self.normalised else "scores"

    @property
    def name(self) -> str | None:
        return self.classes[self.label] if self.label is not None and self.classes else None

    def as_dict(self) -> dict:
        if self.error:
            return {"file": str(self.file), "error": self.error}
        return {"file": str(self.file), "label": self.label, "class": self.name,
                self.kind: [round(float(p), 6) for p in self.probabilities],
                "classes": list(self.classes)}


def preparation(dataset: Dataset) -> Preparation:
    """How a user's image becomes the network's input for a model of `dataset`: as MNIST's
    digits were made, as Fashion-MNIST's photos were, or (a user's own IDX data) as it is."""
    if dataset.preparation == "digit":
        from nnctl.imaging import prepare

        return prepare
    if dataset.preparation == "garment":
        from nnctl.garment import prepare

        return prepare
    return lambda path, raw=True: as_is(path, dataset.image_shape)


def as_is(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """An image of exactly the dataset's size, grayscale on the 0..255 scale, not inverted."""
    from nnctl.imaging import read_grayscale

    gray = read_grayscale(path)
    if gray.shape != tuple(shape):
        raise UsageError(f"{path}: this model takes {shape[1]}x{shape[0]} images as they are, "
                         f"got {gray.shape[1]}x{gray.shape[0]}")
    return (gray * 255.0).reshape(-1)


def predict_files(checkpoint: Checkpoint, paths: list[Path], raw: bool = False,
                  explain: Path | None = None) -> list[Prediction]:
    """Prepare each image as the model's dataset was made (or as is, with raw) and classify
    them in one batch. With `explain`, a PNG per image showing each stage of a digit's
    preparation is written into that folder."""
    prepare = preparation(checkpoint.dataset)
    digits = checkpoint.dataset.preparation == "digit"
    results: list[Prediction | None] = []
    inputs, stages = [], []
    warnings: dict[int, str] = {}
    for index, path in enumerate(paths):
        try:
            if digits:  # the stages are kept for --explain
                loaded = load_image(path)
                pixels, digit = prepare_loaded(loaded, path, raw)
                stages.append((loaded, digit))
            else:
                pixels = prepare(path, raw)
                stages.append(None)
            if raw and digits and light_border(pixels):
                warnings[index] = ("--raw takes the image as it is, but its border is light: "
                                   "MNIST digits are light on black; leave out --raw to invert "
                                   "and centre it")
            inputs.append(checkpoint.scaler.transform(pixels, checkpoint.network.dtype))
            results.append(None)  # filled in once the batch is classified
        except UsageError as error:
            results.append(Prediction(path, error=str(error).removeprefix(f"{path}: ")))
    if not inputs:
        return results
    batch = np.stack(inputs)
    outputs = zip(checkpoint.network.forward(batch), batch, stages)
    normalised = checkpoint.network.activations[-1].name == "softmax"
    for index, result in enumerate(results):
        if result is None:
            p, pixels, stage = next(outputs)
            results[index] = Prediction(paths[index], int(np.argmax(p)), p,
                                        pixels.reshape(checkpoint.dataset.image_shape),
                                        warning=warnings.get(index), normalised=normalised,
                                        classes=checkpoint.dataset.classes)
            if explain is not None and stage is not None:
                from nnctl.explain import explain_digit, output_path

                explain_digit(output_path(explain, paths[index]), *stage, pixels, p)
    return results


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


def read_number(checkpoint: Checkpoint, path: Path, explain: Path | None = None
                ) -> NumberReading:
    """A row of handwritten digits in one image, read left to right."""
    from nnctl.handwriting import read_digits

    if checkpoint.dataset.preparation != "digit":
        raise UsageError(f"--number reads handwritten digits; this model is for "
                         f"{checkpoint.dataset.title}")
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
