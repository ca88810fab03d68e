"""Arguments in the wrong place: a weights file where a config or an image belongs, a config or
an image where the weights belong. Each gets one line saying what to type instead, rather than
the error of a parser that was handed the wrong kind of file."""

from __future__ import annotations

import shlex
from pathlib import Path

from nnctl.errors import UsageError

ZIP_MAGIC = b"PK\x03\x04"  # an .npz weights file is a zip archive
CONFIG_SUFFIXES = (".yaml", ".yml")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm", ".pbm")


def is_weights_file(path: Path) -> bool:
    """A readable file that starts as a zip archive does (what numpy.savez writes)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == ZIP_MAGIC
    except OSError:
        return False


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def refuse_weights_as_config(config: Path, command: str) -> None:
    """`nnctl train weights.npz`: say how weights are used instead."""
    if not is_weights_file(config):
        return
    instead = {"train": f"nnctl evaluate {_q(config)}, or nnctl train CONFIG --resume {_q(config)}"}
    suggestion = instead.get(command, f"nnctl {command} CONFIG, with the YAML config the "
                                      "weights were trained from")
    raise UsageError(f"{config}: is a weights file, not a YAML config; did you mean: {suggestion}")


def refuse_weights_as_images(images: list[Path], weights: Path) -> None:
    """`nnctl predict weights.npz image.png`: the weights go after --weights."""
    found = [path for path in images if is_weights_file(path)]
    if not found:
        return
    rest = " ".join(_q(path) for path in images if path not in found) or "IMAGE"
    raise UsageError(f"{found[0]}: is a weights file, not an image; did you mean: nnctl predict "
                     f"{rest} --weights {_q(found[0])}")


def refuse_as_weights(weights: Path, command: str) -> None:
    """`nnctl evaluate configs/mnist.yaml` or `--weights digit.png`: name what the file is."""
    if not weights.is_file() or is_weights_file(weights):
        return
    suffix = weights.suffix.lower()
    if suffix in CONFIG_SUFFIXES:
        then = "nnctl train CONFIG --resume WEIGHTS" if command == "train" else \
            f"nnctl {command} WEIGHTS"
        raise UsageError(f"{weights}: is a YAML config, not a weights file; train it first: "
                         f"nnctl train {_q(weights)}, then {then}")
    if suffix in IMAGE_SUFFIXES:
        where = (f"nnctl predict {_q(weights)} --weights WEIGHTS" if command == "predict"
                 else f"nnctl predict {_q(weights)}")
        raise UsageError(f"{weights}: is an image, not a weights file; did you mean: {where}")
