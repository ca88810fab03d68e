"""A user's own dataset in MNIST's format: a folder of four IDX files, read in place.

Each file may be gzipped or not and may be named as MNIST's (`train-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, ...) or plainly (`train-images`, `test-labels`, ...), with an
optional prefix before a dash (`emnist-digits-train-images-idx3-ubyte.gz`). The image size
comes from the IDX header, the number of classes from the names given or the labels. Every
count, size and label is checked before training; a clear one-line error names what is wrong.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from nnctl.data.datasets import SPLIT_KEYS, USER_DATASET, DataFile, Dataset
from nnctl.data.idx import TYPE_CODES, parse_idx
from nnctl.errors import DataError

STEMS = {
    "train_images": ("train-images-idx3-ubyte", "train-images"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels"),
    "test_images": ("t10k-images-idx3-ubyte", "test-images"),
    "test_labels": ("t10k-labels-idx1-ubyte", "test-labels"),
}
WHAT = {"train_images": "training images", "train_labels": "training labels",
        "test_images": "test images", "test_labels": "test labels"}
MAX_CLASSES = 65536
MAX_SIDE = 4096


def find_files(folder: Path) -> dict[str, Path]:
    """The four files of the folder by role; a DataError when one is missing or ambiguous."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory (data.path names a folder of IDX files)")
    names = sorted(p for p in folder.iterdir() if p.is_file())
    found = {}
    for role, stems in STEMS.items():
        matches = [p for p in names if _matches(p.name, stems)]
        if not matches:
            expected = " or ".join(f"{stem}[.gz]" for stem in stems)
            raise DataError(f"{folder}: no {WHAT[role]} (expected {expected})")
        if len(matches) > 1:
            listed = ", ".join(p.name for p in matches)
            raise DataError(f"{folder}: {listed} could each be the {WHAT[role]}; keep one")
        found[role] = matches[0]
    return found


def _matches(name: str, stems: tuple[str, ...]) -> bool:
    name = name.removesuffix(".gz")
    return any(name == stem or name.endswith("-" + stem) for stem in stems)


def read_file(path: Path) -> bytes:
    """The IDX bytes of a file, gunzipped when it is gzip."""
    try:
        content = path.read_bytes()
        if content[:2] == b"\x1f\x8b":
            content = gzip.decompress(content)
    except OSError as error:
        reason = error.strerror or str(error)
        raise DataError(f"{path}: cannot read ({reason})") from None
    except (EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt gzip data ({error})") from None
    return content


def _header(path: Path) -> tuple[int, tuple[int, ...]]:
    """The type code and shape from an IDX header, reading no more than the header."""
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as handle:
            head = handle.read(4)
            if len(head) == 4 and head[0] == head[1] == 0 and head[2] in TYPE_CODES and head[3]:
                dims = handle.read(4 * head[3])
                if len(dims) == 4 * head[3]:
                    return head[2], struct.unpack(f">{head[3]}I", dims)
    except OSError as error:
        reason = error.strerror or str(error)
        raise DataError(f"{path}: cannot read ({reason})") from None
    except (EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt gzip data ({error})") from None
    raise DataError(f"{path}: not an IDX file (bad magic bytes or truncated header)")


def _labels(path: Path) -> np.ndarray:
    labels = parse_idx(read_file(path), str(path))
    if labels.ndim != 1:
        raise DataError(f"{path}: labels should have 1 dimension, found shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels should be integers, found {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path}: negative label {int(labels.min())}")
    return labels


def describe_folder(folder: str | Path, classes: list[str] | None = None) -> Dataset:
    """Check a folder's four IDX files against each other and the class names; describe it.

    Reads the image headers and the labels only: the images themselves are read by
    `load_folder_split` (where their sizes are checked against the headers)."""
    folder = Path(folder)
    files = find_files(folder)
    shapes = {}
    for role in ("train_images", "test_images"):
        code, shape = _header(files[role])
        if code != 0x08:
            raise DataError(f"{files[role]}: images should be unsigned bytes (IDX type 0x08), "
                            f"found type 0x{code:02x}")
        if len(shape) != 3 or not all(shape[1:]):
            raise DataError(f"{files[role]}: images should have 3 dimensions (count, height, "
                            f"width), found shape {shape}")
        if max(shape[1:]) > MAX_SIDE:
            raise DataError(f"{files[role]}: {shape[2]}x{shape[1]} images are larger than "
                            f"nnctl trains on ({MAX_SIDE} pixels a side)")
        shapes[role] = shape
    if shapes["train_images"][1:] != shapes["test_images"][1:]:
        raise DataError(f"{folder}: training images are {_size(shapes['train_images'])}, test "
                        f"images {_size(shapes['test_images'])}; they should be the same size")
    top = -1
    for split in ("train", "test"):
        images, labels_role = SPLIT_KEYS[split]
        labels = _labels(files[labels_role])
        count = shapes[images][0]
        if len(labels) != count:
            raise DataError(f"{files[labels_role]}: {len(labels)} labels for {count} images in "
                            f"{files[images].name}")
        if count == 0:
            raise DataError(f"{files[images]}: holds no images")
        top = max(top, int(labels.max()))
        if classes is not None and top >= len(classes):
            raise DataError(f"{files[labels_role]}: label {top} is outside the {len(classes)} "
                            f"classes data.classes names (labels count from 0)")
    if classes is None:
        if top + 1 > MAX_CLASSES:
            raise DataError(f"{folder}: labels go up to {top}, more than {MAX_CLASSES} classes")
        if top < 1:
            raise DataError(f"{folder}: every label is 0; a classifier needs at least 2 classes")
        classes = [str(label) for label in range(top + 1)]
    height, width = shapes["train_images"][1:]
    return Dataset(
        name=USER_DATASET,
        title=f"IDX data in {folder}",
        classes=tuple(classes),
        image_shape=(height, width),
        files={role: DataFile(path.name, None, shapes[role] if role in shapes else
                              (shapes[role.replace("labels", "images")][0],))
               for role, path in files.items()},
        path=str(folder),
    )


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[2]}x{shape[1]}"  # width x height, as image sizes are written


def load_folder_split(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of a described folder: images (n, height*width) uint8, labels (n,)."""
    folder = Path(dataset.path)
    arrays = []
    for role in SPLIT_KEYS[split]:
        spec = dataset.files[role]
        path = folder / spec.name
        array = parse_idx(read_file(path), str(path))
        if array.shape != spec.shape:
            raise DataError(f"{path}: shape {array.shape}, expected {spec.shape}; did the file "
                            "change since it was checked?")
        arrays.append(array.reshape(len(array), -1) if array.ndim == 3 else array)
    images, labels = arrays
    if len(labels) and int(labels.max()) >= dataset.num_classes:
        raise DataError(f"{folder / dataset.files[SPLIT_KEYS[split][1]].name}: label "
                        f"{int(labels.max())} is outside the {dataset.num_classes} classes")
    return images, labels.astype(np.int64 if labels.max(initial=0) > 255 else np.uint8,
                                 copy=False)
