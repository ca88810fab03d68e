"""The weights file: a plain .npz that anyone can open with numpy.load(allow_pickle=False).

Keys: W0..W{L-1} (fan_out, fan_in) and b0..b{L-1}, the scaler's `scaler_min` and
`scaler_max`, `config` and `history` as JSON text, `format_version` and `nnctl_version`, and
(from format version 2) `dataset`: JSON with the dataset's name, title, class names and image
shape; a file without it is an MNIST model.
A checkpoint that can resume training also has `train_state` (JSON: epochs done, the random
generator's state, optimizer steps) and the optimizer's slots `opt_{slot}_{i}`.
Files are written to a temporary file beside the target and renamed: never half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnctl import __version__
from nnctl.activations import get_activation
from nnctl.config import Config, config_from_dict
from nnctl.data.datasets import MNIST, Dataset
from nnctl.data.scaler import MinMaxScaler
from nnctl.data.source import from_record, to_record
from nnctl.errors import ConfigError, NnctlError, UsageError
from nnctl.filemode import set_mode_for
from nnctl.network import Network

FORMAT_VERSION = 2
REQUIRED = ("format_version", "nnctl_version", "config", "history", "scaler_min", "scaler_max")


@dataclass
class Checkpoint:
    network: Network
    scaler: MinMaxScaler
    config: Config
    history: list[dict] = field(default_factory=list)
    train_state: dict | None = None
    optimizer_state: dict[str, list[np.ndarray]] = field(default_factory=dict)
    dataset: Dataset = MNIST


def class_names(checkpoint: Checkpoint) -> list[str]:
    """The names of a model's classes, indexed as its outputs ('0'..'9' for MNIST)."""
    return list(checkpoint.dataset.classes)


def save(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write atomically; raises NnctlError naming the path when it cannot be written."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "nnctl_version": np.array(__version__),
        "config": np.array(json.dumps(checkpoint.config.to_dict())),
        "history": np.array(json.dumps(checkpoint.history)),
        "dataset": np.array(json.dumps(to_record(checkpoint.dataset))),
        **checkpoint.scaler.to_arrays(),
    }
    for index, (w, b) in enumerate(zip(checkpoint.network.weights, checkpoint.network.biases)):
        arrays[f"W{index}"], arrays[f"b{index}"] = w, b
    if checkpoint.train_state is not None:
        arrays["train_state"] = np.array(json.dumps(checkpoint.train_state))
        for slot, values in checkpoint.optimizer_state.items():
            for index, value in enumerate(values):
                arrays[f"opt_{slot}_{index}"] = value
    _write_atomically(path, arrays)
    return path


def check_writable(path: Path) -> Path:
    """The directory a weights file can be written in, or a one-line error saying why not."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise UsageError(f"{path}: the directory {directory} {problem}")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a file name for the weights")
    return directory


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    directory = check_writable(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise NnctlError(f"{path}: cannot write there ({error.strerror})") from None
    try:
        set_mode_for(fd, path)
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as error:
        Path(temp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise NnctlError(f"{path}: cannot write ({error.strerror})") from None
        raise


def _text(archive, key: str, path: Path) -> str:
    value = archive[key]
    if value.dtype.kind != "U" or value.ndim != 0:
        raise UsageError(f"{path}: '{key}' should be text, found {value.dtype} {value.shape}")
    return str(value)


def _json(archive, key: str, path: Path):
    try:
        return json.loads(_text(archive, key, path))
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: '{key}' is not valid JSON ({error.msg})") from None


def load(path: str | os.PathLike) -> Checkpoint:
    """Read and check a weights file; every problem is a one-line UsageError naming it."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a weights file (.npz)")
    if not path.exists():
        raise UsageError(f"{path}: no such weights file (train one with: nnctl train CONFIG)")
    try:
        if not zipfile.is_zipfile(path):
            raise UsageError(f"{path}: not an nnctl weights file (not an .npz zip archive)")
        with np.load(path, allow_pickle=False) as archive:
            return _checkpoint(path, archive)
    except NnctlError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UsageError(f"{path}: holds pickled objects, which nnctl never loads") from None
        raise UsageError(f"{path}: not a readable weights file ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise UsageError(f"{path}: not an nnctl weights file ({reason})") from None


def _checkpoint(path: Path, archive) -> Checkpoint:
    keys = set(archive.files)
    missing = [key for key in REQUIRED if key not in keys]
    if missing:
        raise UsageError(f"{path}: not an nnctl weights file (missing {', '.join(missing)})")
    version = archive["format_version"]
    if version.dtype.kind not in "iu" or version.ndim != 0:
        raise UsageError(f"{path}: format_version should be an integer")
    if int(version) > FORMAT_VERSION:
        raise UsageError(
            f"{path}: format version {int(version)} is newer than this nnctl reads "
            f"({FORMAT_VERSION}); upgrade nnctl"
        )
    raw_config = _json(archive, "config", path)
    try:
        config = config_from_dict(raw_config)
    except ConfigError as error:
        first = str(error).splitlines()[0]
        raise UsageError(f"{path}: its config does not validate: {first}") from None
    layers = len(config.model.layers)
    expected = {f"{p}{i}" for p in "Wb" for i in range(layers)}
    known = expected | set(REQUIRED) | {"train_state", "dataset"}
    extra = sorted(k for k in keys - known if not k.startswith("opt_"))
    if extra:
        raise UsageError(f"{path}: unexpected arrays {', '.join(extra)}")
    if missing := sorted(expected - keys):
        raise UsageError(f"{path}: missing arrays {', '.join(missing)} for {layers} layers")
    weights = [archive[f"W{i}"] for i in range(layers)]
    biases = [archive[f"b{i}"] for i in range(layers)]
    sizes = config.sizes
    for i, (w, b) in enumerate(zip(weights, biases)):
        if w.shape != (sizes[i + 1], sizes[i]) or b.shape != (sizes[i + 1],):
            raise UsageError(
                f"{path}: W{i} {w.shape} and b{i} {b.shape} should be "
                f"({sizes[i + 1]}, {sizes[i]}) and ({sizes[i + 1]},) as the config says"
            )
        for name, value in ((f"W{i}", w), (f"b{i}", b)):
            if value.dtype not in (np.float32, np.float64):
                raise UsageError(f"{path}: {name} has dtype {value.dtype}, expected float")
            if not np.isfinite(value).all():
                raise UsageError(f"{path}: {name} holds nan or infinite values")
    dataset = _dataset(archive, path) if "dataset" in keys else MNIST
    if dataset.num_pixels != sizes[0] or dataset.num_classes != sizes[-1]:
        raise UsageError(f"{path}: the network maps {sizes[0]} inputs to {sizes[-1]} outputs, "
                         f"but its dataset {dataset.title} has {dataset.num_pixels} pixels and "
                         f"{dataset.num_classes} classes")
    scaler = MinMaxScaler.from_arrays(archive)
    if scaler.data_min.shape not in ((), (sizes[0],)) or scaler.data_max.shape != scaler.data_min.shape:
        raise UsageError(f"{path}: scaler arrays should be scalars or ({sizes[0]},) vectors")
    activations = [get_activation(l.activation, **l.activation_params()) for l in config.model.layers]
    dtype = np.dtype(config.training.dtype)
    network = Network([w.astype(dtype) for w in weights], [b.astype(dtype) for b in biases],
                      activations, [layer.dropout for layer in config.model.layers])
    history = _json(archive, "history", path)
    state = _json(archive, "train_state", path) if "train_state" in keys else None
    slots: dict[str, list[np.ndarray]] = {}
    for key in sorted(k for k in keys if k.startswith("opt_")):
        slot, _, index = key[4:].rpartition("_")
        slots.setdefault(slot, []).append((int(index), archive[key].astype(dtype)))
    optimizer_state = {s: [v for _, v in sorted(vs)] for s, vs in slots.items()}
    return Checkpoint(network, scaler, config, history if isinstance(history, list) else [],
                      state, optimizer_state, dataset)


def _dataset(archive, path: Path) -> Dataset:
    record = _json(archive, "dataset", path)
    try:
        classes, shape = record["classes"], record["image_shape"]
        if not (isinstance(record["name"], str) and isinstance(record["title"], str)
                and isinstance(classes, list) and all(isinstance(n, str) for n in classes)
                and isinstance(shape, list) and len(shape) == 2
                and all(isinstance(n, int) and n > 0 for n in shape)):
            raise TypeError("wrong types")
    except (KeyError, TypeError) as error:
        raise UsageError(f"{path}: 'dataset' is damaged ({error})") from None
    return from_record(record)
