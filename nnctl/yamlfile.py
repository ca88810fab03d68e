"""Reading a YAML file safely, with the line of every key for error messages.

The document is composed into nodes first (no Python object is built from tags: safe
loading only), its size is bounded counting every alias expansion, so that an alias bomb
("billion laughs") is refused before anything walks it, and the line number of each key
path is recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nnctl.errors import ConfigError, UsageError

MAX_NODES = 10_000
MAX_BYTES = 1 << 20


def read_text(path: Path, what: str = "file") -> str:
    """A user's text file, or a one-line error saying why it cannot be read."""
    try:
        with open(path, "rb") as handle:
            content = handle.read(MAX_BYTES + 1)  # by bytes read: /dev/zero has st_size 0
        if len(content) > MAX_BYTES:
            raise UsageError(f"{path}: {what} is larger than {MAX_BYTES // 1024} KiB")
        return content.decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected a {what}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text {what}") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read ({error.strerror})") from None


def load_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """The document and a map from key path ('training.epochs', 'model.layers[0]') to line."""
    text = read_text(path, "config file")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        if node is not None:
            _index(node, "", lines, [0], path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return data, lines


def _index(node: yaml.Node, path: str, lines: dict[str, int], count: list[int],
           source: Path) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ConfigError(
            f"{source}: more than {MAX_NODES} values once aliases are expanded; refused"
        )
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            child = f"{path}.{name}" if path else str(name)
            lines.setdefault(child, key.start_mark.line + 1)
            _index(value, child, lines, count, source)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            child = f"{path}[{position}]"
            lines.setdefault(child, item.start_mark.line + 1)
            _index(item, child, lines, count, source)
