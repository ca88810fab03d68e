"""The training config: its schema, defaults and validation, before any work is done.

Every problem found is reported on its own line as `FILE:LINE: key.path: what is wrong`,
and all of them at once, so a user fixes a config in one pass.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnctl.activations import OUTPUT_ONLY, REGISTRY as ACTIVATIONS
from nnctl.data.mnist import NUM_CLASSES, NUM_PIXELS
from nnctl.data.scaler import MODES as SCALING_MODES
from nnctl.errors import ConfigError, UsageError
from nnctl.initializers import INITIALIZERS
from nnctl.losses import LOSSES
from nnctl.optimizers import OPTIMIZERS
from nnctl.schedules import SCHEDULES
from nnctl.threads import MAX_THREADS, parse as parse_threads
from nnctl.yamlfile import load_yaml

TRAIN_SAMPLES = 60000
MAX_UNITS = 65536
MAX_PARAMETERS = 100_000_000
ACTIVATION_PARAMS = {"leaky_relu": "slope", "elu": "alpha"}


@dataclass
class LayerConfig:
    units: int
    activation: str
    slope: float | None = None
    alpha: float | None = None
    dropout: float = 0.0

    def activation_params(self) -> dict[str, float]:
        return {k: v for k, v in (("slope", self.slope), ("alpha", self.alpha)) if v is not None}


@dataclass
class AugmentConfig:
    shift: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.scale)


@dataclass
class DataConfig:
    dataset: str = "mnist"
    dir: str | None = None
    validation: int = 0
    scaling: str = "global"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    input: int = NUM_PIXELS
    layers: list[LayerConfig] = field(default_factory=list)
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


@dataclass
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: int = 0  # patience in epochs without a better validation accuracy; 0: off
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
        return [self.model.input] + [layer.units for layer in self.model.layers]


class _Checker:
    """Reads typed values out of nested mappings, collecting one line per problem."""

    def __init__(self, source: str, lines: dict[str, int]):
        self.source, self.lines, self.errors = source, lines, []

    def fail(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        where = f"{self.source}:{line}" if line else self.source
        self.errors.append(f"{where}: {path}: {message}")

    def section(self, raw: Any, path: str, known: tuple[str, ...]) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(path, f"expected a mapping with keys {', '.join(known)}, got "
                            f"{_kind(raw)}")
            return {}
        for key in raw:
            if key not in known:
                guess = difflib.get_close_matches(str(key), known, n=1)
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
            lo, hi = ("(" if low_open else "[") + f"{low:g}", f"{high:g}" + (")" if high_open else "]")
            self.fail(where, f"must be a finite number in {lo}, {hi}, got {value:g}")
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
        if value is None:
            self.fail(where, f"is required; one of {', '.join(options)}")
        elif not isinstance(value, str) or value not in options:
            guess = difflib.get_close_matches(str(value), list(options), n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            self.fail(where, f"unknown value {value!r}{hint} (one of {', '.join(options)})")
        else:
            return value
        return default

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


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a YAML config file; raise ConfigError listing every problem.

    `overrides` maps dotted key paths ('training.epochs') to values that replace the file's."""
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
    return validate(raw, str(path), lines)


def validate(raw: Any, source: str = "config", lines: dict[str, int] | None = None) -> Config:
    c = _Checker(source, lines or {})
    top = c.section(raw, "", ("data", "model", "loss", "training", "output"))
    if not isinstance(raw, dict):
        raise ConfigError("\n".join(c.errors))

    d = c.section(top.get("data"), "data",
                  ("dataset", "dir", "validation", "scaling", "augment"))
    g = c.section(d.get("augment"), "data.augment", ("shift", "rotate", "scale"))
    data = DataConfig(
        dataset=c.choice(d, "data", "dataset", "mnist", ("mnist",)),
        dir=c.text(d, "data", "dir", None),
        validation=c.integer(d, "data", "validation", 0, 0, TRAIN_SAMPLES - 1),
        scaling=c.choice(d, "data", "scaling", "global", SCALING_MODES),
        augment=AugmentConfig(
            shift=c.number(g, "data.augment", "shift", 0.0, 0.0, 8.0),
            rotate=c.number(g, "data.augment", "rotate", 0.0, 0.0, 90.0),
            scale=c.number(g, "data.augment", "scale", 0.0, 0.0, 0.5),
        ),
    )

    m = c.section(top.get("model"), "model", ("input", "layers", "init"))
    model = ModelConfig(
        input=c.integer(m, "model", "input", NUM_PIXELS, 1, MAX_UNITS),
        layers=_layers(c, m.get("layers")),
        init=c.choice(m, "model", "init", "auto", ("auto",) + INITIALIZERS),
    )
    if model.input != NUM_PIXELS:
        c.fail("model.input", f"MNIST images have {NUM_PIXELS} pixels, got {model.input}")

    loss = c.choice(top, "", "loss", "sparse_categorical_crossentropy", tuple(LOSSES))

    t = c.section(top.get("training"), "training",
                  ("epochs", "batch_size", "learning_rate", "optimizer", "schedule",
                   "early_stopping", "seed", "dtype", "threads"))
    training = TrainingConfig(
        epochs=c.integer(t, "training", "epochs", 10, 1, 100_000),
        batch_size=c.integer(t, "training", "batch_size", 64, 1, TRAIN_SAMPLES),
        learning_rate=c.number(t, "training", "learning_rate", 0.1, 0.0, low_open=True),
        optimizer=_optimizer(c, t.get("optimizer", "sgd")),
        schedule=_schedule(c, t.get("schedule", "constant")),
        early_stopping=c.integer(t, "training", "early_stopping", 0, 0, 100_000),
        seed=c.integer(t, "training", "seed", 0, 0, 2**63 - 1),
        dtype=c.choice(t, "training", "dtype", "float32", ("float32", "float64")),
        threads=_threads(c, t.get("threads")),
    )
    output = c.text(top, "", "output", "weights.npz")

    config = Config(model, data, loss, training, output)
    _cross_checks(c, config)
    if c.errors:
        raise ConfigError("\n".join(c.errors))
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
        entry = c.section(item, path, ("units", "activation", "slope", "alpha", "dropout"))
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
    )


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


def _cross_checks(c: _Checker, config: Config) -> None:
    layers = config.model.layers
    if not layers or any(layer.units is None or layer.activation is None for layer in layers):
        return
    last = len(layers) - 1
    if layers[-1].units != NUM_CLASSES:
        c.fail(f"model.layers[{last}].units",
               f"the output layer needs {NUM_CLASSES} units (one per digit), got "
               f"{layers[-1].units}")
    if layers[-1].dropout:
        c.fail(f"model.layers[{last}].dropout", "dropout belongs to hidden layers")
    if config.training.early_stopping and not config.data.validation:
        c.fail("training.early_stopping", "needs a validation split (data.validation > 0)")
    for index, layer in enumerate(layers[:-1]):
        if layer.activation in OUTPUT_ONLY:
            c.fail(f"model.layers[{index}].activation",
                   f"{layer.activation} belongs to the output layer only")
    output = layers[-1].activation
    loss = LOSSES.get(config.loss)
    if loss is not None and not loss().works_with(output):
        suited = ", ".join(sorted(loss.outputs))
        c.fail("loss", f"{config.loss} cannot work with a {output} output layer "
                       f"(it needs one of: {suited})")
    sizes = config.sizes
    parameters = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    if parameters > MAX_PARAMETERS:
        c.fail("model.layers", f"{parameters:,} parameters is more than the {MAX_PARAMETERS:,} "
                               "nnctl allows")
    available = TRAIN_SAMPLES - config.data.validation
    if config.training.batch_size > available:
        c.fail("training.batch_size", f"{config.training.batch_size} is larger than the "
                                      f"{available} training samples left after validation")


def config_from_dict(raw: dict) -> Config:
    """Rebuild a Config from the JSON a weights file carries (validated again)."""
    return validate(raw, "weights file config")
