"""Classifying users' image files with a trained network, one result (or error) per file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nnctl.data.datasets import Dataset
from nnctl.errors import UsageError
from nnctl.imaging import light_border
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


def predict_files(checkpoint: Checkpoint, paths: list[Path], raw: bool = False
                  ) -> list[Prediction]:
    """Prepare each image as the model's dataset was made (or as is, with raw) and classify
    them in one batch."""
    prepare = preparation(checkpoint.dataset)
    results: list[Prediction | None] = []
    inputs = []
    warnings: dict[int, str] = {}
    for index, path in enumerate(paths):
        try:
            pixels = prepare(path, raw)
            if raw and checkpoint.dataset.preparation == "digit" and light_border(pixels):
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
    outputs = zip(checkpoint.network.forward(batch), batch)
    normalised = checkpoint.network.activations[-1].name == "softmax"
    for index, result in enumerate(results):
        if result is None:
            p, pixels = next(outputs)
            results[index] = Prediction(paths[index], int(np.argmax(p)), p,
                                        pixels.reshape(checkpoint.dataset.image_shape),
                                        warning=warnings.get(index), normalised=normalised,
                                        classes=checkpoint.dataset.classes)
    return results
