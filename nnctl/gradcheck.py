"""Checking backpropagation against central finite differences.

For each parameter tensor, the analytic gradient g from backprop is compared with the
numerical one, the fourth-order central difference
g~_i = (-L(p_i + 2h) + 8 L(p_i + h) - 8 L(p_i - h) + L(p_i - 2h)) / 12h, by the relative error
||g - g~|| / (||g|| + ||g~||) over the checked entries (cs231n's measure: it does not blow up
where single entries are near zero). A tensor whose gradient norm is below 1e-4 (a unit
sitting at gelu's minimum, say) is measured against 1e-4 instead: finite differences cannot
resolve a relative error on a gradient that small. Its truncation error is O(h^4), not the O(h^2) of the
two-point formula, which matters where a gradient is small because samples nearly cancel.
In float64 with h = 1e-5 a correct backprop gives errors around 1e-9 or below; a wrong
derivative gives errors near 1.

An entry whose perturbation moves a pre-activation of a kinked activation (relu, leaky_relu,
elu) across 0, or onto it, is skipped, as finite-difference checkers do: there the loss is not
differentiable, and the differences average the slopes of both sides (z exactly 0 at a ReLU
gives 0.5 against backprop's 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.losses import Loss
from nnctl.network import Network


@dataclass(frozen=True)
class TensorCheck:
    name: str
    shape: tuple[int, ...]
    checked: int
    relative_error: float


GRADIENT_FLOOR = 1e-4
KINKED = frozenset({"relu", "leaky_relu", "elu"})  # derivative jumps at z = 0


def _kink_sides(network: Network, rows: int) -> list[np.ndarray]:
    """Which side of the kink each pre-activation of a kinked layer is on (-1, 0, +1), as
    the last forward pass over `rows` rows left them."""
    z = network._workspace(rows).z
    return [np.sign(z[i]) for i, f in enumerate(network.activations) if f.name in KINKED]


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||g - g~|| / (||g|| + ||g~||), with the denominator at least GRADIENT_FLOOR."""
    scale = max(float(np.linalg.norm(analytic) + np.linalg.norm(numeric)), GRADIENT_FLOOR)
    return float(np.linalg.norm(analytic - numeric)) / scale


def check_gradients(network: Network, loss: Loss, x: np.ndarray, y: np.ndarray,
                    step: float = 1e-5, max_entries: int | None = None,
                    rng: np.random.Generator | None = None) -> list[TensorCheck]:
    """Compare backprop with finite differences for every parameter tensor.

    `max_entries` checks a random sample of that many entries per tensor (all by default);
    the network should be float64 for the comparison to mean anything."""
    rng = rng or np.random.default_rng(0)
    network.backprop(x, y, loss)
    analytic = [p.grad.copy() for p in network.params]

    results = []
    for p, grad in zip(network.params, analytic):
        flat = p.value.reshape(-1)
        count = flat.size if max_entries is None else min(max_entries, flat.size)
        entries = np.arange(flat.size) if count == flat.size else rng.choice(
            flat.size, count, replace=False)
        numeric = np.empty(count)
        smooth = np.ones(count, bool)
        network.loss(x, y, loss)
        sides = _kink_sides(network, len(x))
        for k, i in enumerate(entries):
            original = flat[i]
            values = []
            for offset in (2 * step, step, -step, -2 * step):
                flat[i] = original + offset
                values.append(network.loss(x, y, loss))
                moved = _kink_sides(network, len(x))
                if any((a != b).any() for a, b in zip(sides, moved)):
                    smooth[k] = False
            flat[i] = original
            numeric[k] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * step)
        error = relative_error(grad.reshape(-1)[entries][smooth], numeric[smooth])
        results.append(TensorCheck(p.name, p.value.shape, int(smooth.sum()), error))
    network.backprop(x, y, loss)  # leave .grad as the analytic gradient
    return results


def check_config(config, samples: int = 8, max_entries: int = 30, data_dir=None
                 ) -> tuple[list[TensorCheck], str]:
    """Gradient-check the network a Config describes, in float64.

    Uses the first `samples` training images of the config's dataset when they are already
    cached (nothing is downloaded for a check), random inputs in [0, 1] otherwise. Returns the checks and a
    description of the inputs used."""
    from dataclasses import replace

    from nnctl.errors import DataError
    from nnctl.data.datasets import DATASETS
    from nnctl.data.source import load_split, resolve_config
    from nnctl.data.scaler import MinMaxScaler
    from nnctl.experiment import build_network
    from nnctl.losses import get_loss
    from nnctl.trainer import targets_for

    rng = np.random.default_rng(config.training.seed)
    config64 = replace(config, training=replace(config.training, dtype="float64"))
    network = build_network(config64, rng)
    try:
        dataset = resolve_config(config.data)
        images, labels = load_split(dataset, "train", data_dir or config.data.dir,
                                    download=False)
        scaler = MinMaxScaler.fit(images, config.data.scaling)
        x = scaler.transform(images[:samples], np.float64)
        labels, source = labels[:samples], f"the {dataset.title} training set"
    except DataError:
        x = rng.random((samples, config.sizes[0]))
        labels = rng.integers(0, config.sizes[-1], samples)
        known = DATASETS.get(config.data.dataset)
        source = f"random inputs ({known.title if known else 'the data'} is not cached)"
    loss = get_loss(config.loss)
    y = targets_for(loss, labels, config.sizes[-1], np.float64)
    return check_gradients(network, loss, x, y, max_entries=max_entries, rng=rng), source
