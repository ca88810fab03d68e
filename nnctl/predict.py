"""Classifying users' image files with a trained network, one result (or error) per file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.errors import UsageError
from nnctl.imaging import light_border, prepare
from nnctl.weights import Checkpoint


@dataclass(frozen=True)
class Prediction:
    file: Path
    label: int | None = None
    probabilities: np.ndarray | None = None
    pixels: np.ndarray | None = None  # the 784 inputs as the network saw them
    error: str | None = None
    warning: str | None = None
    normalised: bool = True  # a softmax output: the values are probabilities summing to 1

    @property
    def kind(self) -> str:
        """What the output values are: probabilities (softmax) or scores (any other output)."""
        return "probabilities" if self.normalised else "scores"

    def as_dict(self) -> dict:
        if self.error:
            return {"file": str(self.file), "error": self.error}
        return {"file": str(self.file), "label": self.label,
                self.kind: [round(float(p), 6) for p in self.probabilities]}


def predict_files(checkpoint: Checkpoint, paths: list[Path], raw: bool = False
                  ) -> list[Prediction]:
    """Prepare each image MNIST-style (or as is, with raw) and classify them in one batch."""
    results: list[Prediction | None] = []
    inputs = []
    warnings: dict[int, str] = {}
    for index, path in enumerate(paths):
        try:
            pixels = prepare(path, raw)
            if raw and light_border(pixels):
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
            results[index] = Prediction(paths[index], int(np.argmax(p)), p, pixels,
                                        warning=warnings.get(index), normalised=normalised)
    return results
