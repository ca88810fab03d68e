"""Loss functions: their value, their gradient dL/da, and the fused output error (a - y) / n.

Conventions (n = samples in the batch, k = outputs; every loss is a mean over samples):
- mse:   L = 1/(2n) sum_i ||a_i - y_i||^2            dL/da = (a - y) / n
         (Nielsen's quadratic cost: the 1/2 cancels the square's 2; no division by k.)
- binary_crossentropy:
         L = -1/n sum_i sum_j [y log a + (1 - y) log(1 - a)]   dL/da = (a - y) / (a (1 - a) n)
- categorical_crossentropy (one-hot y):
         L = -1/n sum_i sum_j y_ij log a_ij                   dL/da = -y / (a n)
- sparse_categorical_crossentropy (integer labels c_i):
         L = -1/n sum_i log a_i,c_i                           the same, with y = onehot(c)

With its natural output (sigmoid for binary, softmax for the categorical pair) the chain rule
collapses to dL/dz = (a - y) / n, and the value is computed from the logits z with
log-sum-exp, so neither needs a clip. Other pairings take the general route, dL/da through the
activation's backward, clipping a to [eps, 1 - eps] where a log or a division needs it.
"""

from __future__ import annotations


import numpy as np

Array = np.ndarray
EPS = 1e-7
_SMALLEST_EXACT = 1e-30  # float32 keeps full precision down to 1.2e-38


def _clip(a: Array) -> Array:
    return np.clip(a, EPS, 1.0 - EPS)


def _log_sum_exp(z: Array) -> Array:
    peak = z.max(axis=1, keepdims=True)
    return (peak + np.log(np.exp(z - peak).sum(axis=1, keepdims=True)))[:, 0]


class Loss:
    """Base: a loss over a batch; `targets` says whether y is one-hot or integer labels."""

    name: str = ""
    targets: str = "onehot"
    natural_output: str | None = None
    outputs: frozenset[str] = frozenset()

    def value(self, a: Array, y: Array) -> float:
        raise NotImplementedError

    def gradient(self, a: Array, y: Array) -> Array:
        """dL/da for the general chain rule."""
        raise NotImplementedError

    def fused_value(self, z: Array, y: Array, a: Array | None = None) -> float:
        """L computed from the logits, for the natural output activation; `a`, the output
        activations, lets a loss read the value off them where that is as exact."""
        raise NotImplementedError

    def fused_delta(self, a: Array, y: Array, out: Array, scale: float = 1.0) -> None:
        """scale * dL/dz = scale * (a - y) / n into `out`, for the natural output activation."""
        np.subtract(a, y, out=out)
        out *= scale / len(a)

    def works_with(self, output_activation: str) -> bool:
        return output_activation in self.outputs


class MeanSquaredError(Loss):
    name = "mse"
    outputs = frozenset(
        {"sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus", "swish",
         "softmax", "linear"}
    )

    def value(self, a, y):
        diff = a - y
        return 0.5 * float(np.einsum("ij,ij->", diff, diff)) / len(a)

    def gradient(self, a, y):
        grad = a - y
        grad *= 1.0 / len(a)
        return grad


class BinaryCrossEntropy(Loss):
    name = "binary_crossentropy"
    natural_output = "sigmoid"
    outputs = frozenset({"sigmoid", "softmax"})

    def value(self, a, y):
        a = _clip(a)
        return -float(np.sum(y * np.log(a) + (1.0 - y) * np.log1p(-a))) / len(a)

    def gradient(self, a, y):
        a = _clip(a)
        return (a - y) / (a * (1.0 - a) * len(a))

    def fused_value(self, z, y, a=None):
        # -[y log s(z) + (1 - y) log(1 - s(z))] = max(z, 0) - z y + log(1 + e^-|z|)
        terms = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return float(terms.sum()) / len(z)


class CategoricalCrossEntropy(Loss):
    name = "categorical_crossentropy"
    natural_output = "softmax"
    outputs = frozenset({"softmax", "sigmoid"})

    def value(self, a, y):
        return -float(np.sum(y * np.log(_clip(a)))) / len(a)

    def gradient(self, a, y):
        return -y / (_clip(a) * len(a))

    def fused_value(self, z, y, a=None):
        # -sum_j y_j log softmax(z)_j = sum_j y_j (logsumexp(z) - z_j)
        return float(np.sum(y * (_log_sum_exp(z)[:, None] - z))) / len(z)


class SparseCategoricalCrossEntropy(Loss):
    name = "sparse_categorical_crossentropy"
    targets = "index"
    natural_output = "softmax"
    outputs = frozenset({"softmax", "sigmoid"})

    def value(self, a, y):
        picked = a[np.arange(len(a)), y]
        return -float(np.log(_clip(picked)).sum()) / len(a)

    def gradient(self, a, y):
        rows = np.arange(len(a))
        grad = np.zeros_like(a)
        grad[rows, y] = -1.0 / (_clip(a[rows, y]) * len(a))
        return grad

    def fused_value(self, z, y, a=None):
        rows = np.arange(len(z))
        if a is not None:
            # -log softmax(z)_c, read off the softmax already computed: one log per row
            # instead of an exp per logit. Where a probability is so small that float
            # rounding would cost digits, the log-sum-exp of the logits is used instead.
            picked = a[rows, y]
            if picked.min() >= _SMALLEST_EXACT:
                return -float(np.log(picked).sum()) / len(z)
        return float(np.sum(_log_sum_exp(z) - z[rows, y])) / len(z)

    def fused_delta(self, a, y, out, scale=1.0):
        step = scale / len(a)
        np.multiply(a, step, out=out)
        out[np.arange(len(a)), y] -= step


LOSSES: dict[str, type[Loss]] = {
    cls.name: cls
    for cls in (
        MeanSquaredError,
        BinaryCrossEntropy,
        CategoricalCrossEntropy,
        SparseCategoricalCrossEntropy,
    )
}


def get_loss(name: str) -> Loss:
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None


def one_hot(labels: Array, classes: int, dtype=np.float32) -> Array:
    encoded = np.zeros((len(labels), classes), dtype=dtype)
    encoded[np.arange(len(labels)), labels] = 1.0
    return encoded
