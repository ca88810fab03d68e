"""The datasets nnctl knows by name, one description each: files, digests, mirrors, classes.

Every entry is in MNIST's format (four IDX files: training and test images and labels), so
one cache and one loader serve them all; what differs is only what is described here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from nnctl.errors import UsageError

SPLIT_KEYS = {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")}


@dataclass(frozen=True)
class DataFile:
    """One canonical file: its IDX name, SHA-256 of the IDX bytes (None: not verified), shape."""

    name: str
    sha256: str | None
    shape: tuple[int, ...]

    @property
    def archive(self) -> str:
        return self.name + ".gz"

    @property
    def nbytes(self) -> int:
        """The IDX file's size: a 4-byte magic, 4 bytes per dimension, one byte per value."""
        count = 1
        for side in self.shape:
            count *= side
        return 4 + 4 * len(self.shape) + count


@dataclass(frozen=True)
class Dataset:
    """What nnctl needs to know of a dataset to fetch, check, train on and label it."""

    name: str  # as written in a config's data.dataset; also the cache folder's name
    title: str  # as written in prose: "MNIST", "Fashion-MNIST"
    classes: tuple[str, ...]
    image_shape: tuple[int, int]
    files: dict[str, DataFile] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()
    mirror_env: str | None = None
    preparation: str = "raw"  # how predict turns a user's photo into an input, by name
    path: str | None = None  # a user's folder of IDX files, read in place (data.dataset: idx)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    @property
    def train_samples(self) -> int:
        return self.files["train_labels"].shape[0]

    def sources(self) -> list[str]:
        """Its mirror variable's value as the only source when set, else its mirrors in order."""
        value = os.environ.get(self.mirror_env, "").strip() if self.mirror_env else ""
        return [value] if value else list(self.mirrors)


def _files(digests: tuple[str, str, str, str], shape: tuple[int, int],
           train: int = 60000, test: int = 10000) -> dict[str, DataFile]:
    """The four canonical MNIST-format files with their digests (train images, train labels,
    test images, test labels)."""
    return {
        "train_images": DataFile("train-images-idx3-ubyte", digests[0], (train, *shape)),
        "train_labels": DataFile("train-labels-idx1-ubyte", digests[1], (train,)),
        "test_images": DataFile("t10k-images-idx3-ubyte", digests[2], (test, *shape)),
        "test_labels": DataFile("t10k-labels-idx1-ubyte", digests[3], (test,)),
    }


MNIST = Dataset(
    name="mnist",
    title="MNIST",
    classes=tuple(str(digit) for digit in range(10)),
    image_shape=(28, 28),
    files=_files((
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ), (28, 28)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    mirror_env="NNCTL_MNIST_MIRROR",
    preparation="digit",
)

FASHION_MNIST = Dataset(
    name="fashion-mnist",
    title="Fashion-MNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
    image_shape=(28, 28),
    files=_files((
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ), (28, 28)),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    mirror_env="NNCTL_FASHION_MNIST_MIRROR",
    preparation="garment",
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (MNIST, FASHION_MNIST)}
USER_DATASET = "idx"  # data.dataset for a folder of the user's own IDX files (data.path)


def get_dataset(name: str) -> Dataset:
    """The registered dataset called `name`; a UsageError listing the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r} (one of {', '.join(DATASETS)})") from None
