"""The training config: its schema, defaults and validation, before any work is done.

Every problem found is reported on its own line as `FILE:LINE: key.path: what is wrong`,
and all of them at once, so a user fixes a config in one pass.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnctl.activations import OUTPUT_ONLY, REGISTRY as ACTIVATIONS
from nnctl.data.datasets import DATASETS, USER_DATASET
from nnctl.data.mnist import NUM_PIXELS
from nnctl.data.scaler import MODES as SCALING_MODES
from nnctl.errors import ConfigError, UsageError
from nnctl.initializers import INITIALIZERS
from nnctl.layers import schema
from nnctl.layers.build import input_shape
from nnctl.losses import LOSSES
from nnctl.optimizers import OPTIMIZERS
from nnctl.schedules import SCHEDULES
from nnctl.threads import MAX_THREADS, parse as parse_threads
from nnctl.yamlfile import load_yaml

TRAIN_SAMPLES = 60000
MAX_UNITS = 65536
MAX_PARAMETERS = 100_000_000
ACTIVATION_PARAMS = {"leaky_relu": "slope", "elu": "alpha"}
DEFAULT_LEARNING_RATES = {"sgd": 0.1, "adam": 0.001}  # Adam's as in Keras and PyTorch
MONITORS = ("validation_accuracy", "validation_loss")


@dataclass
class LayerConfig:
    units: int
    activation: str
    slope: float | None = None
    alpha: float | None = None
    dropout: float = 0.0
    type: str = "dense"

    def activation_params(self) -> dict[str, float]:
        return {k: v for k, v in (("slope", self.slope), ("alpha", self.alpha)) if v is not None}


@dataclass
class AugmentConfig:
    shift: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0
    flip: float = 0.0  # the chance of a left-right mirror image (garments, not digits)
    erase: float = 0.0  # the chance that a rectangle of the image is replaced by noise

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.scale or self.flip or self.erase)


@dataclass
class DataConfig:
    dataset: str = "mnist"
    dir: str | None = None
    validation: int | float = 0  # a count of images, or a fraction in (0, 1)
    scaling: str = "global"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    path: str | None = None  # the folder of IDX files, for dataset idx
    classes: list[str] | None = None  # class names, overriding the dataset's or the labels'
    limit: int = 0  # use only the first `limit` images of each file (0: all)

    def sizes(self, train_available: int) -> tuple[int, int]:
        """(training, validation) image counts drawn from `train_available` training images."""
        available = min(self.limit, train_available) if self.limit else train_available
        held = self.validation
        if isinstance(held, float):
            held = round(held * available)
        return available - held, held


@dataclass
class ModelConfig:
    input: int | list[int] = NUM_PIXELS  # values, or [channels, height, width]
    layers: list[LayerConfig] = field(default_factory=list)  # or nnctl.layers.schema's
    init: str = "auto"


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8


@dataclass
class ScheduleConfig:
    name: str = "constant"
    warmup: int = 0
    step_size: int = 10
    gamma: float = 0.1
    min_learning_rate: float = 0.0
    patience: int = 2  # plateau: epochs without improvement before the rate is cut
    monitor: str = "validation_loss"  # plateau: the metric watched
    min_delta: float = 0.0  # plateau: the least change that counts as an improvement


@dataclass
class EarlyStoppingConfig:
    patience: int = 0  # epochs without improvement before stopping; 0: off
    monitor: str = "validation_accuracy"
    min_delta: float = 0.0

    @property
    def active(self) -> bool:
        return self.patience > 0


@dataclass
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.1  # when the config sets none: the optimizer's own default
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    save_best: bool = False  # the file's weights are the best epoch's; the last epoch's resume
    seed: int = 0
    dtype: str = "float32"
    threads: int | str | None = None  # a count or "auto"; None: NNCTL_THREADS, else auto


@dataclass
class Config:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    loss: str = "sparse_categorical_crossentropy"
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: str = "weights.npz"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def sizes(self) -> list[int]:
        """The flat input size and each dense layer's units (the tutorials' sizes)."""
        return [math.prod(input_shape(self.model))] + [
            layer.units for layer in self.model.layers if layer.type == "dense"]


class _Checker:
    """Reads typed values out of nested mappings, collecting one line per problem.

    `options` maps the key paths a command-line option set to the option's name, so that
    a bad value is blamed on the option and not on the file."""

    def __init__(self, source: str, lines: dict[str, int], options: dict[str, str] | None = None):
        self.source, self.lines, self.errors = source, lines, []
        self.options = options or {}
        self.positions: list[int] = []  # the line of each error, for report()

    def fail(self, path: str, message: str) -> None:
        if path in self.options:
            self.errors.append(f"{self.options[path]}: {message}")
            self.positions.append(0)
            return
        line = _line_of(path, self.lines)
        where = f"{self.source}:{line}" if line else self.source
        self.errors.append(f"{where}: {path}: {message}")
        self.positions.append(line or 0)

    def report(self) -> str:
        """Every error, the options' first and then the file's in the order of its lines."""
        order = sorted(range(len(self.errors)),
                       key=lambda i: self.positions[i] if i < len(self.positions) else 0)
        return "\n".join(self.errors[i] for i in order)

    def section(self, raw: Any, path: str, known: tuple[str, ...]) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(path, f"expected a mapping with keys {', '.join(known)}, got "
                            f"{_kind(raw)}")
            return {}
        for key in raw:
            if key not in known:
                guess = difflib.get_close_matches(str(key).lower(), known, n=1)
                hint = f"; did you mean '{guess[0]}'?" if guess else f"; known: {', '.join(known)}"
                self.fail(_join(path, key), f"unknown key{hint}")
        return raw

    def integer(self, raw: dict, path: str, key: str, default, low: int, high: int):
        value = raw.get(key, default)
        where = _join(path, key)
        if value is None and default is None:
            self.fail(where, "is required")
        elif isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"expected a whole number, got {_kind(value)}")
        elif not low <= value <= high:
            self.fail(where, f"must be between {low} and {high}, got {value}")
        else:
            return value
        return default

    def number(self, raw: dict, path: str, key: str, default: float, low: float,
               high: float = math.inf, low_open: bool = False, high_open: bool = False):
        value = raw.get(key, default)
        where = _join(path, key)
        if isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(where, f"expected a number, got {_kind(value)}")
            return default
        value = float(value)
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            self.fail(where, f"must be {_range_text(low, high, low_open, high_open)}, got {value:g}")
            return default
        return value

    def flag(self, raw: dict, path: str, key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(_join(path, key), f"expected true or false, got {_kind(value)}")
            return default
        return value

    def choice(self, raw: dict, path: str, key: str, default: str | None, options) -> str:
        value = raw.get(key, default)
        where = _join(path, key)
        by_case = {str(option).lower(): option for option in options}
        if value is None:
            self.fail(where, f"is required; one of {', '.join(options)}")
        elif isinstance(value, str) and value.lower() in by_case:
            return by_case[value.lower()]  # names are case-insensitive: ReLU is relu
        else:
            guess = difflib.get_close_matches(str(value).lower(), list(by_case), n=1)
            hint = f"; did you mean '{by_case[guess[0]]}'?" if guess else ""
            self.fail(where, f"unknown value {value!r}{hint} (one of {', '.join(options)})")
        return default

    def path(self, raw: dict, path: str, key: str, default: str | None) -> str | None:
        """A file or directory path, with ~ and $VARS expanded as a shell would. Nothing
        (null, ~, a blank) means the default only where the default is nothing."""
        value = raw.get(key, default)
        if value is None and default is None:
            return None
        where = _join(path, key)
        if value is None or (isinstance(value, str) and not value.strip()):
            self.fail(where, "is empty (YAML reads a bare ~ or a blank value as nothing); "
                             "write a path, such as \"~/weights.npz\"")
            return default
        if not isinstance(value, str):
            self.fail(where, f"expected a non-empty string, got {_kind(value)}")
            return default
        expanded = os.path.expanduser(os.path.expandvars(value))
        unset = re.search(r"\$(\w+|\{\w+\})", expanded)
        if unset:
            self.fail(where, f"uses ${unset.group(1).strip('{}')}, which is not set")
            return default
        return expanded

    def text(self, raw: dict, path: str, key: str, default: str | None) -> str | None:
        value = raw.get(key, default)
        if value is None or (isinstance(value, str) and value.strip()):
            return value
        self.fail(_join(path, key), f"expected a non-empty string, got {_kind(value)}")
        return default


def _join(path: str, key: Any) -> str:
    name = str(key)
    if not (name.isprintable() and name.strip() == name and name):
        name = repr(key)  # keeps control characters and blanks visible, on one line
    return f"{path}.{name}" if path else name


def _line_of(path: str, lines: dict[str, int]) -> int | None:
    """The line of a key path, else of its nearest parent that has one ('optimizer: adamw'
    has no line for training.optimizer.name, but one for training.optimizer)."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def _range_text(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """'a number > 0', 'a number >= 0' or 'a number in [0, 1)'."""
    if math.isinf(high):
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    return (f"a number in {'(' if low_open else '['}{low:g}, "
            f"{high:g}{')' if high_open else ']'}")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None,
                options: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML config file; raise ConfigError listing every problem.

    `overrides` maps dotted key paths ('training.epochs') to values that replace the file's;
    `options` names the command-line option each came from, for the error messages."""
    path = Path(path)
    raw, lines = load_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the config is empty; it needs at least model.layers")
    for key, value in (overrides or {}).items():
        if not isinstance(raw, dict):
            break
        *parents, leaf = key.split(".")
        section = raw
        for name in parents:
            if not isinstance(section.get(name), dict):
                section[name] = {}
            section = section[name]
        section[leaf] = value
        lines.pop(key, None)
    named = {key: name for key, name in (options or {}).items() if key in (overrides or {})}
    return validate(raw, str(path), lines, named)


def validate(raw: Any, source: str = "config", lines: dict[str, int] | None = None,
             options: dict[str, str] | None = None, read_data: bool = True) -> Config:
    """`read_data` False skips reading a user's IDX folder (a weights file's config);
    `options` names the command-line option that set a key, for the messages."""
    c = _Checker(source, lines or {}, options)
    top = c.section(raw, "", ("data", "model", "loss", "training", "output", "search"))
    if not isinstance(raw, dict):
        raise ConfigError(c.report())

    d = c.section(top.get("data"), "data",
                  ("dataset", "dir", "validation", "scaling", "augment", "limit", "path",
                   "classes"))
    g = c.section(d.get("augment"), "data.augment", ("shift", "rotate", "scale", "flip", "erase"))
    data = DataConfig(
        dataset=c.choice(d, "data", "dataset", "mnist", (*DATASETS, USER_DATASET)),
        dir=c.path(d, "data", "dir", None),
        validation=_validation(c, d),
        scaling=c.choice(d, "data", "scaling", "global", SCALING_MODES),
        augment=AugmentConfig(
            shift=c.number(g, "data.augment", "shift", 0.0, 0.0, 8.0),
            rotate=c.number(g, "data.augment", "rotate", 0.0, 0.0, 90.0),
            scale=c.number(g, "data.augment", "scale", 0.0, 0.0, 0.5),
            flip=c.number(g, "data.augment", "flip", 0.0, 0.0, 1.0),
            erase=c.number(g, "data.augment", "erase", 0.0, 0.0, 1.0),
        ),
        path=c.text(d, "data", "path", None),
        classes=_class_names(c, d.get("classes")),
        limit=c.integer(d, "data", "limit", 0, 0, TRAIN_SAMPLES),
    )
    dataset = _dataset(c, data, read_data)
    if dataset is not None and data.augment.active and dataset.image_shape != (28, 28):
        c.fail("data.augment", f"works on 28x28 images; {dataset.title} has "
                               f"{dataset.image_shape[1]}x{dataset.image_shape[0]}")

    m = c.section(top.get("model"), "model", ("input", "layers", "init"))
    model = ModelConfig(
        input=_input(c, m, dataset.num_pixels if dataset else NUM_PIXELS),
        layers=_layers(c, m.get("layers")),
        init=c.choice(m, "model", "init", "auto", ("auto",) + INITIALIZERS),
    )
    if dataset is not None:
        height, width = dataset.image_shape
        if isinstance(model.input, list) and model.input != [1, height, width]:
            c.fail("model.input", f"{dataset.title} images are [1, {height}, {width}] "
                                  f"(channels, height, width), got {model.input}")
        elif isinstance(model.input, int) and model.input != dataset.num_pixels:
            c.fail("model.input", f"{dataset.title} images have {dataset.num_pixels} pixels, "
                                  f"got {model.input} (the images are {width}x{height})")

    loss = c.choice(top, "", "loss", "sparse_categorical_crossentropy", tuple(LOSSES))

    t = c.section(top.get("training"), "training",
                  ("epochs", "batch_size", "learning_rate", "optimizer", "schedule",
                   "early_stopping", "save_best", "seed", "dtype", "threads"))
    optimizer = _optimizer(c, t.get("optimizer", "sgd"))
    training = TrainingConfig(
        epochs=c.integer(t, "training", "epochs", 10, 1, 100_000),
        batch_size=c.integer(t, "training", "batch_size", 64, 1, TRAIN_SAMPLES),
        learning_rate=c.number(t, "training", "learning_rate",
                               DEFAULT_LEARNING_RATES.get(optimizer.name, 0.1), 0.0,
                               low_open=True),
        optimizer=optimizer,
        schedule=_schedule(c, t.get("schedule", "constant")),
        early_stopping=_early_stopping(c, t.get("early_stopping", 0)),
        save_best=c.flag(t, "training", "save_best", False),
        seed=c.integer(t, "training", "seed", 0, 0, 2**63 - 1),
        dtype=c.choice(t, "training", "dtype", "float32", ("float32", "float64")),
        threads=_threads(c, t.get("threads")),
    )
    output = c.path(top, "", "output", "weights.npz")

    config = Config(model, data, loss, training, output)
    _cross_checks(c, config, dataset)
    if "search" in top and not c.errors:  # nnctl tune's; training ignores it
        from nnctl.search.space import check_space, without_search

        check_space(top["search"], without_search(top), c.fail)
    if c.errors:
        raise ConfigError(c.report())
    return config


def _layers(c: _Checker, raw: Any) -> list[LayerConfig]:
    if raw is None:
        c.fail("model.layers", "is required: a list of {units, activation}")
        return []
    if not isinstance(raw, list) or not raw:
        c.fail("model.layers", f"expected a non-empty list of {{units, activation}}, "
                               f"got {_kind(raw)}")
        return []
    layers = []
    for index, item in enumerate(raw):
        path = f"model.layers[{index}]"
        kind = item.get("type", "dense") if isinstance(item, dict) else "dense"
        if kind != "dense":
            if kind in schema.TYPES:
                layers.append(schema.parse_layer(c, item, path, kind, ACTIVATIONS,
                                                 ACTIVATION_PARAMS))
            else:
                c.choice(item, path, "type", "dense", schema.TYPES)
            continue
        entry = c.section(item, path, ("type", "units", "activation", "slope", "alpha",
                                       "dropout"))
        if not isinstance(item, dict):
            continue
        activation = c.choice(entry, path, "activation", None, tuple(ACTIVATIONS))
        layer = LayerConfig(c.integer(entry, path, "units", None, 1, MAX_UNITS), activation,
                            dropout=c.number(entry, path, "dropout", 0.0, 0.0, 1.0,
                                             high_open=True))
        for name in ("slope", "alpha"):
            if entry.get(name) is not None:
                if ACTIVATION_PARAMS.get(activation) != name:
                    c.fail(_join(path, name), f"{activation} takes no parameter {name!r}")
                else:
                    low_open = name == "alpha"
                    setattr(layer, name, c.number(entry, path, name, None, 0.0, low_open=low_open))
        layers.append(layer)
    return layers


def _input(c: _Checker, m: dict, default: int) -> int | list[int]:
    """model.input: a number of values, or [channels, height, width]."""
    raw = m.get("input", default)
    if isinstance(raw, list) and len(raw) == 3:
        values = [c.integer({"input": v}, "model", "input", None, 1, MAX_UNITS) for v in raw]
        return default if None in values else values
    if isinstance(raw, list):
        c.fail("model.input", f"expected a number or [channels, height, width], got {raw}")
        return default
    return c.integer(m, "model", "input", default, 1, MAX_UNITS)


def _threads(c: _Checker, raw: Any) -> int | str | None:
    if raw is None:
        return None
    try:
        return parse_threads(raw, "threads")
    except UsageError:
        c.fail("training.threads", f"expected a number of threads from 1 to {MAX_THREADS} or "
                                   f"auto, got {_kind(raw)}")
        return None


def _schedule(c: _Checker, raw: Any) -> ScheduleConfig:
    path = "training.schedule"
    if isinstance(raw, str):
        raw = {"name": raw}
    s = c.section(raw, path, tuple(ScheduleConfig.__dataclass_fields__))
    return ScheduleConfig(
        name=c.choice(s, path, "name", "constant", SCHEDULES),
        warmup=c.integer(s, path, "warmup", 0, 0, 100_000),
        step_size=c.integer(s, path, "step_size", 10, 1, 100_000),
        gamma=c.number(s, path, "gamma", 0.1, 0.0, 1.0, low_open=True),
        min_learning_rate=c.number(s, path, "min_learning_rate", 0.0, 0.0),
        patience=c.integer(s, path, "patience", 2, 1, 100_000),
        monitor=c.choice(s, path, "monitor", "validation_loss", MONITORS),
        min_delta=c.number(s, path, "min_delta", 0.0, 0.0),
    )


def _early_stopping(c: _Checker, raw: Any) -> EarlyStoppingConfig:
    """A patience (the short form) or a mapping with patience, monitor and min_delta."""
    path = "training.early_stopping"
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"patience": raw}
    e = c.section(raw, path, tuple(EarlyStoppingConfig.__dataclass_fields__))
    return EarlyStoppingConfig(
        patience=c.integer(e, path, "patience", 0, 0, 100_000),
        monitor=c.choice(e, path, "monitor", "validation_accuracy", MONITORS),
        min_delta=c.number(e, path, "min_delta", 0.0, 0.0),
    )


def _validation(c: _Checker, d: dict) -> int | float:
    """A count of held-out images (a whole number) or a fraction of them (0 < f < 1)."""
    value = d.get("validation", 0)
    if isinstance(value, float):
        return c.number(d, "data", "validation", 0, 0.0, 1.0, low_open=True, high_open=True)
    return c.integer(d, "data", "validation", 0, 0, TRAIN_SAMPLES - 1)


def _optimizer(c: _Checker, raw: Any) -> OptimizerConfig:
    path = "training.optimizer"
    if isinstance(raw, str):
        raw = {"name": raw}
    o = c.section(raw, path, tuple(OptimizerConfig.__dataclass_fields__))
    name = c.choice(o, path, "name", "sgd", tuple(OPTIMIZERS))
    config = OptimizerConfig(
        name=name,
        momentum=c.number(o, path, "momentum", 0.0, 0.0, 1.0, high_open=True),
        nesterov=c.flag(o, path, "nesterov", False),
        weight_decay=c.number(o, path, "weight_decay", 0.0, 0.0),
        beta1=c.number(o, path, "beta1", 0.9, 0.0, 1.0, high_open=True),
        beta2=c.number(o, path, "beta2", 0.999, 0.0, 1.0, high_open=True),
        epsilon=c.number(o, path, "epsilon", 1e-8, 0.0, low_open=True),
    )
    defaults = OptimizerConfig()
    foreign = {"adam": ("momentum", "nesterov"), "sgd": ("beta1", "beta2", "epsilon")}
    for key in foreign.get(name, ()):
        if getattr(config, key) != getattr(defaults, key):
            c.fail(_join(path, key), f"is not an option of {name}")
    if config.nesterov and config.momentum == 0.0:
        c.fail(_join(path, "nesterov"), "needs a momentum above 0")
    return config


def _class_names(c: _Checker, raw: Any) -> list[str] | None:
    if raw is None:
        return None
    names = raw if isinstance(raw, list) else []
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        c.fail("data.classes", f"expected a list of at least 2 names, got {_kind(raw)}")
    elif len(names) < 2:
        c.fail("data.classes", "a classifier needs at least 2 classes")
    elif len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        c.fail("data.classes", f"names appear twice: {', '.join(twice)}")
    else:
        return list(names)
    return None


def _dataset(c: _Checker, data: DataConfig, read_data: bool):
    """The dataset's description, or None when it cannot be known (the checks then skip)."""
    from nnctl.data.source import resolve
    from nnctl.errors import DataError

    if data.dataset == USER_DATASET:
        if data.path is None:
            c.fail("data.path", "is required with dataset idx: the folder of the four IDX files")
            return None
        if not read_data:
            return None
    elif data.path is not None:
        c.fail("data.path", f"belongs to dataset idx; {data.dataset} is downloaded to data.dir")
    if data.dataset not in (*DATASETS, USER_DATASET):
        return None
    try:
        dataset = resolve(data.dataset, data.path, data.classes)
    except DataError as error:
        c.fail("data.path", str(error))
        return None
    if data.dataset != USER_DATASET and data.classes is not None and (
            len(data.classes) != DATASETS[data.dataset].num_classes):
        c.fail("data.classes", f"{dataset.title} has {DATASETS[data.dataset].num_classes} "
                               f"classes, got {len(data.classes)} names")
        return None
    return dataset


def _cross_checks(c: _Checker, config: Config, dataset=None) -> None:
    layers = config.model.layers
    if not layers or any(getattr(layer, "activation", "") is None for layer in layers):
        return
    last = len(layers) - 1
    if layers[-1].type != "dense":
        c.fail(f"model.layers[{last}].type", "the output layer must be dense, with one unit "
                                             "per class")
        return
    if any(layer.type == "dense" and layer.units is None for layer in layers):
        return
    classes = dataset.num_classes if dataset else None
    if classes is not None and layers[-1].units != classes:
        kind = "one per digit" if dataset.name == "mnist" else f"one per {dataset.title} class"
        c.fail(f"model.layers[{last}].units",
               f"the output layer needs {classes} units ({kind}), got {layers[-1].units}")
    if layers[-1].dropout:
        c.fail(f"model.layers[{last}].dropout", "dropout belongs to hidden layers")
    samples = dataset.train_samples if dataset else TRAIN_SAMPLES
    train_count, held = config.data.sizes(samples)
    needs_validation = {"training.early_stopping": config.training.early_stopping.active,
                        "training.save_best": config.training.save_best,
                        "training.schedule": config.training.schedule.name == "plateau"}
    for key, needed in needs_validation.items():
        if needed and not held:
            c.fail(key, "needs a validation split (data.validation above 0)")
    if config.data.limit and held >= config.data.limit:
        c.fail("data.validation", f"holds out {held} of the {config.data.limit} images "
                                  "data.limit leaves, none would be left to train on")
    for index, layer in enumerate(layers[:-1]):
        if getattr(layer, "activation", None) in OUTPUT_ONLY:
            c.fail(f"model.layers[{index}].activation",
                   f"{layer.activation} belongs to the output layer only")
    output = layers[-1].activation
    loss = LOSSES.get(config.loss)
    if loss is not None and not loss().works_with(output):
        suited = ", ".join(sorted(loss.outputs))
        c.fail("loss", f"{config.loss} cannot work with a {output} output layer "
                       f"(it needs one of: {suited})")
    parameters = schema.check_shapes(c, input_shape(config.model), layers)
    if parameters is not None and parameters > MAX_PARAMETERS:
        c.fail("model.layers", f"{parameters:,} parameters is more than the {MAX_PARAMETERS:,} "
                               "nnctl allows")
    if train_count <= 0 and not config.data.limit:
        c.fail("data.validation", f"holds out {held} of the {samples} training images "
                                  f"{dataset.title if dataset else 'the dataset'} has, none "
                                  "would be left to train on")
    available = train_count
    if available > 0 and config.training.batch_size > available:
        c.fail("training.batch_size", f"{config.training.batch_size} is larger than the "
                                      f"{available} training samples left after validation")


def config_from_dict(raw: dict) -> Config:
    """Rebuild a Config from the JSON a weights file carries (validated again)."""
    return validate(raw, "weights file config", read_data=False)
