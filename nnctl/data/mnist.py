"""MNIST as nnctl knows it: the four canonical files, their digests, the cache, the loader.

The cache holds the decompressed IDX files, verified by the SHA-256 of their content, so that
loading is a read and a parse, whatever gzip the mirror used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.data.download import DownloadObserver, fetch, mirror_sources
from nnctl.data.idx import parse_idx
from nnctl.errors import DataError

DATA_DIR_ENV = "NNCTL_DATA_DIR"
NUM_CLASSES = 10
IMAGE_SIDE = 28
NUM_PIXELS = IMAGE_SIDE * IMAGE_SIDE


@dataclass(frozen=True)
class MnistFile:
    """One canonical MNIST file: its IDX name, SHA-256 of the IDX bytes, and shape."""

    name: str
    sha256: str
    shape: tuple[int, ...]

    @property
    def archive(self) -> str:
        return self.name + ".gz"

    @property
    def nbytes(self) -> int:
        """The IDX file's size: a 4-byte magic, 4 bytes per dimension, one byte per value."""
        return 4 + 4 * len(self.shape) + int(np.prod(self.shape))


FILES: dict[str, MnistFile] = {
    "train_images": MnistFile(
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        (60000, IMAGE_SIDE, IMAGE_SIDE),
    ),
    "train_labels": MnistFile(
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        (60000,),
    ),
    "test_images": MnistFile(
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        (10000, IMAGE_SIDE, IMAGE_SIDE),
    ),
    "test_labels": MnistFile(
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        (10000,),
    ),
}


@dataclass(frozen=True)
class Mnist:
    """The raw dataset: images flattened to (n, 784) uint8, labels (n,) uint8."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@dataclass(frozen=True)
class CachedFile:
    """What `nnctl data info` reports of one file in the cache."""

    spec: MnistFile
    path: Path
    size: int | None
    verified: bool
    samples: int | None = None
    class_counts: list[int] | None = None


def resolve_data_dir(option: str | os.PathLike | None = None) -> Path:
    """The data directory: the option, else $NNCTL_DATA_DIR, else ./data."""
    if option:
        return Path(option)
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def cache_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "mnist"


def _verified_bytes(spec: MnistFile, path: Path) -> bytes | None:
    """The file's bytes if they are the canonical content, else None."""
    try:
        with open(path, "rb") as handle:
            content = handle.read(spec.nbytes + 1)  # a longer file is not the file
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    return content if hashlib.sha256(content).hexdigest() == spec.sha256 else None


def ensure_file(
    spec: MnistFile,
    data_dir: Path,
    sources: list[str] | None = None,
    observer: DownloadObserver | None = None,
    download: bool = True,
) -> bytes:
    """The verified bytes of one file, downloading it when the cache lacks a good copy."""
    path = cache_dir(data_dir) / spec.name
    content = _verified_bytes(spec, path)
    if content is not None:
        return content
    if not download:
        raise DataError(f"{path}: not in the cache (run: nnctl data download)")
    if path.exists():
        try:
            path.unlink()  # corrupt: never used, fetched again
        except OSError as error:
            raise DataError(f"{path}: corrupt, and cannot be replaced there ({error.strerror});"
                            " choose a writable data directory with --data-dir or "
                            "NNCTL_DATA_DIR") from None
    fetch(spec.archive, spec.sha256, path, mirror_sources() if sources is None else sources,
          observer, size=spec.nbytes)
    content = _verified_bytes(spec, path)
    if content is None:
        raise DataError(f"{path}: changed on disk right after it was verified")
    return content


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    sources: list[str] | None = None,
    observer: DownloadObserver | None = None,
    download: bool = True,
) -> Mnist:
    """Load (downloading and verifying on first use) the four MNIST files as uint8 arrays."""
    directory = resolve_data_dir(data_dir)
    arrays = {}
    for key, spec in FILES.items():
        content = ensure_file(spec, directory, sources, observer, download)
        array = parse_idx(content, spec.name)
        if array.shape != spec.shape:
            raise DataError(f"{spec.name}: shape {array.shape}, expected {spec.shape}")
        arrays[key] = array.reshape(spec.shape[0], -1) if array.ndim == 3 else array
    return Mnist(**arrays)


def inspect_cache(data_dir: str | os.PathLike | None = None) -> list[CachedFile]:
    """What is in the cache and whether each file verifies, without downloading anything."""
    directory = cache_dir(resolve_data_dir(data_dir))
    report = []
    for spec in FILES.values():
        path = directory / spec.name
        size = path.stat().st_size if path.is_file() else None
        content = _verified_bytes(spec, path) if size is not None else None
        if content is None:
            report.append(CachedFile(spec, path, size, False))
            continue
        array = parse_idx(content, spec.name)
        counts = np.bincount(array, minlength=NUM_CLASSES).tolist() if array.ndim == 1 else None
        report.append(CachedFile(spec, path, size, True, len(array), counts))
    return report
