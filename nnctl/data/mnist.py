"""The cache and loader of MNIST and every dataset in its format (see datasets.py).

The cache holds the decompressed IDX files, verified by the SHA-256 of their content, so that
loading is a read and a parse, whatever gzip the mirror used. Each dataset has its own folder,
named after it, in the data directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.data.datasets import MNIST, SPLIT_KEYS, DataFile, Dataset
from nnctl.data.download import DownloadObserver, RetryPolicy, fetch
from nnctl.data.idx import parse_idx
from nnctl.errors import DataError

DATA_DIR_ENV = "NNCTL_DATA_DIR"
NUM_CLASSES = MNIST.num_classes
IMAGE_SIDE = MNIST.image_shape[0]
NUM_PIXELS = MNIST.num_pixels
MnistFile = DataFile
FILES: dict[str, DataFile] = MNIST.files


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

    spec: DataFile
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


def cache_dir(data_dir: Path, dataset: Dataset = MNIST) -> Path:
    return Path(data_dir) / dataset.name


def _verified_bytes(spec: DataFile, path: Path) -> bytes | None:
    """The file's bytes if they are the canonical content, else None."""
    try:
        with open(path, "rb") as handle:
            content = handle.read(spec.nbytes + 1)  # a longer file is not the file
    except (FileNotFoundError, NotADirectoryError):
        return None  # not cached (a data directory that is a file is reported on writing)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    return content if hashlib.sha256(content).hexdigest() == spec.sha256 else None


def ensure_file(
    spec: DataFile,
    data_dir: Path,
    sources: list[str] | None = None,
    observer: DownloadObserver | None = None,
    download: bool = True,
    dataset: Dataset = MNIST,
    policy: RetryPolicy = RetryPolicy(),
) -> bytes:
    """The verified bytes of one file, downloading it when the cache lacks a good copy."""
    path = cache_dir(data_dir, dataset) / spec.name
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
    created = [d for d in (path.parent, path.parent.parent) if not d.exists()]
    try:
        fetch(spec.archive, spec.sha256, path, dataset.sources() if sources is None else sources,
              observer, policy=policy, mirror_env=dataset.mirror_env or "", title=dataset.title,
              size=spec.nbytes)
    except DataError:
        for directory in created:  # a failed first download leaves no empty folders behind
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    content = _verified_bytes(spec, path)
    if content is None:
        raise DataError(f"{path}: changed on disk right after it was verified")
    return content


def load_split(
    split: str,
    data_dir: str | os.PathLike | None = None,
    sources: list[str] | None = None,
    observer: DownloadObserver | None = None,
    download: bool = True,
    dataset: Dataset = MNIST,
) -> tuple[np.ndarray, np.ndarray]:
    """One split's images flattened to (n, pixels) uint8 and labels (n,), and nothing more:
    evaluating on the test set never fetches the training images."""
    directory = resolve_data_dir(data_dir)
    arrays = []
    for key in SPLIT_KEYS[split]:
        spec = dataset.files[key]
        content = ensure_file(spec, directory, sources, observer, download, dataset)
        array = parse_idx(content, spec.name)
        if array.shape != spec.shape:
            raise DataError(f"{spec.name}: shape {array.shape}, expected {spec.shape}")
        arrays.append(array.reshape(spec.shape[0], -1) if array.ndim == 3 else array)
    return arrays[0], arrays[1]


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    sources: list[str] | None = None,
    observer: DownloadObserver | None = None,
    download: bool = True,
    dataset: Dataset = MNIST,
) -> Mnist:
    """Load (downloading and verifying on first use) the four files as uint8 arrays."""
    train = load_split("train", data_dir, sources, observer, download, dataset)
    test = load_split("test", data_dir, sources, observer, download, dataset)
    return Mnist(*train, *test)


def inspect_cache(data_dir: str | os.PathLike | None = None,
                  dataset: Dataset = MNIST) -> list[CachedFile]:
    """What is in the cache and whether each file verifies, without downloading anything."""
    directory = cache_dir(resolve_data_dir(data_dir), dataset)
    report = []
    for spec in dataset.files.values():
        path = directory / spec.name
        size = path.stat().st_size if path.is_file() else None
        content = _verified_bytes(spec, path) if size is not None else None
        if content is None:
            report.append(CachedFile(spec, path, size, False))
            continue
        array = parse_idx(content, spec.name)
        counts = np.bincount(array, minlength=dataset.num_classes).tolist() if array.ndim == 1 else None
        report.append(CachedFile(spec, path, size, True, len(array), counts))
    return report
