"""The `search:` section: key paths of the config mapped to distributions.

```yaml
search:
  training.learning_rate: {log_uniform: [0.01, 1.0]}
  training.optimizer.momentum: {uniform: [0.8, 0.99]}
  model.layers.0.units: {choice: [128, 256, 512]}
  training.batch_size: {int: [32, 256], log: true}
```

A key path walks the config's sections (`model.layers.0.units` and `model.layers[0].units`
both name the first layer's units); it must name one setting of an existing layer. Each
range is checked on its own, then both of its ends (every option of a choice) are put into
the config and the result validated, so that a search that can sample an invalid config is
refused before any work. Every sampled config is validated again when a trial starts.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nnctl.errors import ConfigError

DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")
MODIFIERS = ("log", "step")
SHORTHAND = ("optimizer", "schedule")  # sections a config may give as a bare name
EXAMPLE = ("{uniform: [0.0, 0.5]}, {log_uniform: [0.001, 0.1]}, {int: [32, 256]} or "
           "{choice: [128, 256]}")

Fail = Callable[[str, str], None]
KeyPath = tuple  # ('model', 'layers', 0, 'units')


@dataclass(frozen=True)
class Dimension:
    """One searched key: a float range, a whole-number range or a list of choices."""

    key: str  # as written in the file: the name of the parameter in the study
    path: KeyPath
    kind: str  # "float" | "int" | "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def corners(self) -> tuple:
        """The values that bound what can be sampled: both ends, or every choice."""
        return self.choices if self.kind == "choice" else (self.low, self.high)

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        scale = "log " if self.log else ""
        step = f" step {self.step:g}" if self.step is not None else ""
        return f"{scale}{self.kind} in [{self.low:g}, {self.high:g}]{step}"


def split_key(key: str) -> KeyPath | None:
    """'model.layers.0.units' or 'model.layers[0].units' -> ('model', 'layers', 0, 'units')."""
    parts: list = []
    for part in re.sub(r"\[(\d+)\]", r".\1", key).split("."):
        if not part:
            return None
        parts.append(int(part) if part.isdigit() else part)
    return tuple(parts)


def dotted(path: KeyPath) -> str:
    """The spelling config errors use: model.layers[0].units."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _schema():
    from nnctl.config import Config

    return Config


def _resolve(path: KeyPath, base: dict) -> str | None:
    """None when the path names one setting of this config; else what is wrong with it."""
    node: Any = _schema()
    raw: Any = base
    for position, part in enumerate(path):
        here = dotted(path[:position]) or "the config"
        if isinstance(node, list):  # a list of sections: the next part is an index
            if not isinstance(part, int):
                return f"{here} is a list; name an entry by its number, as in {here}.0"
            count = len(raw) if isinstance(raw, list) else 0
            if part >= count:
                return f"{here} has {count} entries, there is no entry {part}"
            node, raw = node[0], raw[part]
            continue
        if not dataclasses.is_dataclass(node):
            return f"{here} is a single value, it has no key {part!r}"
        hints = typing.get_type_hints(node)
        if part not in hints:
            known = [name for name in hints]
            guess = difflib.get_close_matches(str(part), known, n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else f"; known: {', '.join(known)}"
            return f"no key {dotted(path[:position + 1])}{hint}"
        hint = hints[part]
        if typing.get_origin(hint) is list:
            node = [typing.get_args(hint)[0]]
        else:
            node = hint
        if isinstance(raw, str) and position and path[position - 1] in SHORTHAND:
            raw = {"name": raw}
        raw = raw.get(part) if isinstance(raw, dict) else None
    if isinstance(node, list) or dataclasses.is_dataclass(node):
        keys = ", ".join(typing.get_type_hints(node[0] if isinstance(node, list) else node))
        return f"{dotted(path)} is a section; name one of its keys ({keys})"
    return None


def apply(base: dict, dimensions: list[Dimension], values: dict[str, Any]) -> dict:
    """A copy of the config `base` with each dimension's key set to its sampled value."""
    raw = copy.deepcopy(base)
    for dimension in dimensions:
        if dimension.key in values:
            set_path(raw, dimension.path, values[dimension.key])
    return raw


def set_path(raw: dict, path: KeyPath, value: Any) -> None:
    """Set one key of a raw config in place, making the sections on the way."""
    node: Any = raw
    *parents, leaf = path
    for part in parents:
        child = node[part] if isinstance(node, list) else node.get(part)
        if isinstance(child, str) and part in SHORTHAND:
            child = {"name": child}
        elif not isinstance(child, (dict, list)):
            child = {}
        node[part] = child
        node = child
    node[leaf] = value


def without_search(raw: dict) -> dict:
    return {key: value for key, value in raw.items() if key != "search"}


def check_space(raw: Any, base: dict, fail: Fail) -> list[Dimension]:
    """The dimensions of a `search:` section, each problem reported through fail(path, msg).

    `base` is the config without its search section, already valid."""
    if raw is None:
        return []
    if not isinstance(raw, dict) or not raw:
        fail("search", f"expected a mapping of config keys to distributions such as {EXAMPLE}")
        return []
    dimensions: list[Dimension] = []
    seen: dict[KeyPath, str] = {}
    for key, spec in raw.items():
        where = f"search.{key}"
        path = split_key(key) if isinstance(key, str) else None
        if path is None:
            fail(where, "expected a key path such as training.learning_rate")
            continue
        problem = _resolve(path, base)
        if problem:
            fail(where, problem)
            continue
        if path in seen:
            fail(where, f"{dotted(path)} is searched twice (also as search.{seen[path]})")
            continue
        seen[path] = key
        dimension = _dimension(key, path, spec, where, fail)
        if dimension is None:
            continue
        if _corners_valid(dimension, base, where, fail):
            dimensions.append(dimension)
    return dimensions


def _corners_valid(dimension: Dimension, base: dict, where: str, fail: Fail) -> bool:
    from nnctl.config import validate

    for value in dimension.corners():
        try:
            validate(apply(base, [dimension], {dimension.key: value}), "\0", read_data=False)
        except ConfigError as error:
            problem = str(error).splitlines()[0].removeprefix("\0: ")
            fail(where, f"the value {value!r} makes an invalid config: {problem}")
            return False
    return True


def _number(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _dimension(key: str, path: KeyPath, spec: Any, where: str, fail: Fail) -> Dimension | None:
    if not isinstance(spec, dict):
        fail(where, f"expected a distribution such as {EXAMPLE}")
        return None
    kinds = [name for name in spec if name in DISTRIBUTIONS]
    for name in spec:
        if name not in DISTRIBUTIONS + MODIFIERS:
            guess = difflib.get_close_matches(str(name), DISTRIBUTIONS + MODIFIERS, n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            fail(where, f"unknown distribution {name!r}{hint} (one of "
                        f"{', '.join(DISTRIBUTIONS)}; modifiers: {', '.join(MODIFIERS)})")
            return None
    if len(kinds) != 1:
        fail(where, f"expected exactly one of {', '.join(DISTRIBUTIONS)}, got "
                    f"{', '.join(kinds) or 'none'}")
        return None
    kind, value = kinds[0], spec[kinds[0]]
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        fail(where, f"log: expected true or false, got {log!r}")
        return None
    if kind == "choice":
        return _choice(key, path, value, spec, where, fail)
    if kind == "log_uniform":
        if "log" in spec and not log:
            fail(where, "log_uniform is a log range; drop 'log: false' or use uniform")
            return None
        log = True
    if not isinstance(value, list) or len(value) != 2:
        fail(where, f"{kind}: expected [low, high], got {value!r}")
        return None
    whole = kind == "int"
    low, high = (_number(v) for v in value)
    if low is None or high is None or (whole and not all(isinstance(v, int) for v in value)):
        what = "whole numbers" if whole else "numbers"
        fail(where, f"{kind}: expected [low, high] as {what}, got {value!r}")
        return None
    if low > high:
        fail(where, f"an empty range: low {low:g} is above high {high:g}")
        return None
    if low == high:
        fail(where, f"an empty range [{low:g}, {high:g}]; set the key in the config instead")
        return None
    if log and low <= 0:
        fail(where, f"a log range needs low > 0, but [{low:g}, {high:g}] reaches 0 or below")
        return None
    if step is not None:
        number = _number(step)
        if number is None or number <= 0 or (whole and not isinstance(step, int)):
            fail(where, f"step: expected a {'whole ' if whole else ''}number above 0, got {step!r}")
            return None
        if log and (not whole or step != 1):
            fail(where, "a log range cannot have a step")
            return None
        step = number
    return Dimension(key, path, "int" if whole else "float", low, high, log, step)


def _choice(key: str, path: KeyPath, value: Any, spec: dict, where: str,
            fail: Fail) -> Dimension | None:
    if any(name in spec for name in MODIFIERS):
        fail(where, "choice takes no log or step")
        return None
    if not isinstance(value, list) or not value:
        fail(where, f"choice: expected a non-empty list of values, got {value!r}")
        return None
    for option in value:
        if not isinstance(option, (str, int, float, bool)):
            fail(where, f"choice: options must be single values, got {option!r}")
            return None
    if len(value) == 1:
        fail(where, "a choice of one option; set the key in the config instead")
        return None
    repeated = [option for index, option in enumerate(value) if option in value[:index]]
    if repeated:
        fail(where, f"choice: {repeated[0]!r} is listed twice")
        return None
    return Dimension(key, path, "choice", choices=tuple(value))


def load_space(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[dict, list[Dimension]]:
    """The config file's settings without `search:` (with `overrides`, dotted key paths, set)
    and its validated dimensions; ConfigError listing every problem."""
    from nnctl.config import validate
    from nnctl.yamlfile import load_yaml

    raw, lines = load_yaml(Path(path))
    if isinstance(raw, dict):
        for key, value in (overrides or {}).items():
            set_path(raw, split_key(key), value)
            lines.pop(key, None)
    validate(raw, str(path), lines)
    if not isinstance(raw.get("search"), dict):
        raise ConfigError(f"{path}: no search section to tune; add one such as "
                          "search: {training.learning_rate: {log_uniform: [0.01, 1.0]}}")
    base = without_search(raw)
    return base, check_space(raw["search"], base, lambda where, message: None)
