"""The weights file: a plain .npz that anyone can open with numpy.load(allow_pickle=False).

Keys: W0..W{L-1} (fan_out, fan_in) and b0..b{L-1}, the scaler's `scaler_min` and
`scaler_max`, `config` and `history` as JSON text, `format_version` and `nnctl_version`, and
(from format version 2) `dataset`: JSON with the dataset's name, title, class names and image
shape; a file without it is an MNIST model.
A checkpoint that can resume training also has `train_state` (JSON: epochs done, the random
generator's state, optimizer steps) and the optimizer's slots `opt_{slot}_{i}`.
Files are written to a temporary file beside the target and renamed: never half-written.

Loading trusts nothing: every member's declared shape, dtype and uncompressed size are
checked against what the file's config implies before any member is read (a 1 KB file
declaring a 745 GiB array, or a zip bomb, is refused from its headers), every value is
checked after, and the optimizer's slots are read only to resume.
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
MAX_TEXT = {"config": 1 << 20, "nnctl_version": 256, "train_state": 1 << 20,
            "history": 1 << 26, "dataset": 1 << 20}  # characters of each JSON or text member


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
    try:
        longest = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(path.name)) > longest:
        raise UsageError(f"{path}: the file name is longer than the {longest} bytes the file "
                         "system allows")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a file name for the weights")
    if path.exists() and not path.is_file():
        raise UsageError(f"{path}: not a regular file (a device or pipe); weights are written "
                         "to regular files only")
    return directory


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    directory = check_writable(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=".tmp", dir=directory)
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


def load(path: str | os.PathLike, optimizer: bool = False) -> Checkpoint:
    """Read and check a weights file; every problem is a one-line UsageError naming it.

    The optimizer's slots (as large as the weights, twice for Adam) are read only with
    `optimizer`, to resume; otherwise `optimizer_state` stays empty."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a weights file (.npz)")
    if not path.exists():
        raise UsageError(f"{path}: no such weights file (train one with: nnctl train CONFIG)")
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file, expected a weights file (.npz)")
    try:
        if not zipfile.is_zipfile(path):
            raise UsageError(f"{path}: not an nnctl weights file (not an .npz zip archive)")
        headers = _check_headers(path)
        with np.load(path, allow_pickle=False) as archive:
            return _checkpoint(path, archive, headers, optimizer)
    except NnctlError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UsageError(f"{path}: holds pickled objects, which nnctl never loads") from None
        raise UsageError(f"{path}: not a readable weights file ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise UsageError(f"{path}: not an nnctl weights file ({reason})") from None


@dataclass(frozen=True)
class Member:
    """What an .npz member declares in its .npy header, and its uncompressed size."""

    shape: tuple[int, ...]
    dtype: np.dtype
    header_bytes: int
    stored_bytes: int

    @property
    def declared_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Member:
    from numpy.lib import format as npy

    with archive.open(info) as handle:
        try:
            version = npy.read_magic(handle)
            read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read(handle)
        except ValueError as error:
            raise UsageError(f"{path}: member {info.filename} is not a NumPy array ({error})"
                             ) from None
        return Member(tuple(shape), dtype, handle.tell(), info.file_size)


def _check_headers(path: Path) -> dict[str, Member]:
    """Every member's header, refusing any whose stored bytes exceed what it declares."""
    members = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            if info.file_size > (1 << 40) or info.compress_size > info.file_size + (1 << 20):
                raise UsageError(f"{path}: member {key} has implausible sizes; refused")
            member = _read_header(archive, info, path)
            if member.dtype.hasobject:
                raise UsageError(f"{path}: holds pickled objects, which nnctl never loads")
            if member.stored_bytes > member.header_bytes + member.declared_bytes:
                raise UsageError(f"{path}: {key} holds {member.stored_bytes:,} bytes, more than "
                                 f"its declared {member.shape} {member.dtype}; refused")
            _check_member(path, key, member, None)  # text and version: before any read
            members[key] = member
    return members


def expected_shapes(config: Config) -> dict[str, list[tuple[int, ...]]]:
    """The shapes each array member may have under `config` (opt_{slot}_{i} follow the
    parameter i: W0, b0, W1, ...)."""
    sizes = config.sizes
    shapes: dict[str, list[tuple[int, ...]]] = {
        "scaler_min": [(), (sizes[0],)], "scaler_max": [(), (sizes[0],)]}
    for i in range(len(config.model.layers)):
        shapes[f"W{i}"], shapes[f"b{i}"] = [(sizes[i + 1], sizes[i])], [(sizes[i + 1],)]
    return shapes


def parameter_shapes(config: Config) -> list[tuple[int, ...]]:
    sizes = config.sizes
    return [shape for a, b in zip(sizes, sizes[1:]) for shape in ((b, a), (b,))]


def _check_member(path: Path, key: str, member: Member, config: Config | None) -> None:
    """A member's declared shape, before it is read: text and the version by themselves,
    the arrays against the config (skipped while `config` is None)."""
    if key in MAX_TEXT:
        if member.shape != () or member.dtype.kind != "U":
            raise UsageError(f"{path}: '{key}' should be text, found {member.dtype} "
                             f"{member.shape}")
        if member.dtype.itemsize // 4 > MAX_TEXT[key]:
            raise UsageError(f"{path}: '{key}' is longer than {MAX_TEXT[key]:,} characters")
        return
    if key == "format_version":
        allowed = [()]
    elif config is None:
        return
    elif key.startswith("opt_"):
        index = key.rpartition("_")[2]
        shapes = parameter_shapes(config)
        allowed = [shapes[int(index)]] if index.isdigit() and int(index) < len(shapes) else []
    else:
        allowed = expected_shapes(config).get(key)
        if allowed is None:
            return  # an unknown member: refused by name afterwards, never read
    if member.shape not in allowed:
        want = " or ".join(map(str, allowed)) or "nothing (no such parameter)"
        raise UsageError(f"{path}: {key} declares shape {member.shape}, the config says {want}")
    if member.dtype.kind not in "fiu":
        raise UsageError(f"{path}: {key} has dtype {member.dtype}, expected numbers")


def _checkpoint(path: Path, archive, headers: dict[str, Member] | None = None,
                optimizer: bool = True) -> Checkpoint:
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
    for key, member in (headers or {}).items():
        _check_member(path, key, member, config)
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
    _check_scaler(path, scaler)
    activations = [get_activation(l.activation, **l.activation_params()) for l in config.model.layers]
    dtype = np.dtype(config.training.dtype)
    network = Network([w.astype(dtype) for w in weights], [b.astype(dtype) for b in biases],
                      activations, [layer.dropout for layer in config.model.layers])
    history = _json(archive, "history", path)
    _check_history(path, history)
    state = _json(archive, "train_state", path) if "train_state" in keys else None
    if state is not None:
        _check_train_state(path, state, len(history), config.training.epochs)
    slots: dict[str, list[np.ndarray]] = {}
    for key in sorted(k for k in keys if k.startswith("opt_") and optimizer):
        slot, _, index = key[4:].rpartition("_")
        slots.setdefault(slot, []).append((int(index), archive[key].astype(dtype)))
    optimizer_state = {s: [v for _, v in sorted(vs)] for s, vs in slots.items()}
    return Checkpoint(network, scaler, config, history, state, optimizer_state, dataset)


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


def _check_scaler(path: Path, scaler: MinMaxScaler) -> None:
    if not (np.isfinite(scaler.data_min).all() and np.isfinite(scaler.data_max).all()):
        raise UsageError(f"{path}: the scaler holds nan or infinite values")
    if (scaler.data_min > scaler.data_max).any():
        raise UsageError(f"{path}: the scaler's minimum exceeds its maximum")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_history(path: Path, history) -> None:
    """A list of epoch records with numbers where numbers belong: resume and plot read it."""
    def numbers_ok(record: dict, keys: tuple[str, ...]) -> bool:
        return all(_number(record[k]) for k in keys if k in record)

    def record_ok(r) -> bool:
        if not isinstance(r, dict) or not isinstance(r.get("epoch"), int):
            return False
        evaluations = r.get("evaluations", {})
        return (numbers_ok(r, ("train_loss", "train_accuracy", "seconds", "learning_rate"))
                and isinstance(evaluations, dict)
                and all(isinstance(e, dict) and numbers_ok(e, ("accuracy", "loss", "samples"))
                        for e in evaluations.values()))

    if not isinstance(history, list) or not all(map(record_ok, history)):
        raise UsageError(f"{path}: 'history' is damaged (expected a list of epoch records)")


def _check_train_state(path: Path, state, recorded: int, epochs: int) -> None:
    """The counters resume trusts: whole numbers in range, in step with the history."""
    ok = (isinstance(state, dict) and isinstance(state.get("epochs_done"), int)
          and isinstance(state.get("optimizer_steps"), int) and isinstance(state.get("rng"), dict)
          and not isinstance(state["epochs_done"], bool))
    if not ok or not 1 <= state["epochs_done"] <= epochs or state["optimizer_steps"] < 0:
        raise UsageError(f"{path}: 'train_state' is damaged (epochs done, optimizer steps "
                         "and the random generator's state are needed to resume)")
    if state["epochs_done"] != recorded:
        raise UsageError(f"{path}: 'train_state' says {state['epochs_done']} epochs are done, "
                         f"the history records {recorded}; the file is damaged")
