"""Min-max scaling to [0, 1], fitted on the training images and carried in the weights file.

Behaves like scikit-learn's MinMaxScaler: x' = (x - min) / (max - min), where a feature whose
training range is zero gets a scale of 1 instead of a division by zero. `global` fits one
min and max over all pixels; `per_pixel` fits one per pixel. The mode is the shape of the
fitted arrays (a scalar or one value per pixel), so the two arrays are all there is to save.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MODES = ("global", "per_pixel")


@dataclass(frozen=True)
class MinMaxScaler:
    data_min: np.ndarray
    data_max: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, mode: str = "global") -> MinMaxScaler:
        if mode not in MODES:
            raise ValueError(f"scaling mode must be one of {MODES}, not {mode!r}")
        axis = None if mode == "global" else 0
        return cls(
            np.asarray(x.min(axis=axis), dtype=np.float64),
            np.asarray(x.max(axis=axis), dtype=np.float64),
        )

    @property
    def mode(self) -> str:
        return "global" if self.data_min.ndim == 0 else "per_pixel"

    def _scale_and_offset(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        span = self.data_max - self.data_min
        scale = 1.0 / np.where(span == 0, 1.0, span)
        return scale.astype(dtype), (-self.data_min * scale).astype(dtype)

    def transform(self, x: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """Scaled copy of `x` in `dtype`."""
        out = np.empty(x.shape, dtype=dtype)
        self.transform_into(x, out)
        return out

    def transform_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write the scaled `x` into `out`."""
        self.transformer(out.dtype)(x, out)

    def transformer(self, dtype: np.dtype | type) -> Callable[[np.ndarray, np.ndarray], None]:
        """transform_into for outputs of `dtype`, with the scale and offset worked out once:
        training keeps the uint8 images (4x less memory) and scales each gathered batch, one
        pass, plus one for a non-zero offset."""
        scale, offset = self._scale_and_offset(np.dtype(dtype))
        shift = bool(offset.any())

        def scale_and_shift(x: np.ndarray, out: np.ndarray) -> None:
            np.copyto(out, x)  # a plain cast, then a same-type multiply: 7.5 us against 9.1
            np.multiply(out, scale, out=out)  # for the casting multiply (timeit, 64 x 784)
            if shift:
                out += offset

        return scale_and_shift

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"scaler_min": self.data_min, "scaler_max": self.data_max}

    @classmethod
    def from_arrays(cls, arrays) -> MinMaxScaler:
        return cls(
            np.asarray(arrays["scaler_min"], dtype=np.float64),
            np.asarray(arrays["scaler_max"], dtype=np.float64),
        )
