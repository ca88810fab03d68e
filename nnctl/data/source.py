"""Which dataset a run uses and where its arrays come from: the cache, or the user's folder.

`resolve` turns a config's data section into a `Dataset` description; `load_split` gives one
split of it. The weights file records a description (`to_record`) so that a trained model
knows its classes and image shape without the data at hand (`from_record`).
"""

from __future__ import annotations

import os

import numpy as np

from nnctl.data.datasets import DATASETS, MNIST, USER_DATASET, Dataset, get_dataset
from nnctl.data.download import DownloadObserver


def resolve(name: str, path: str | os.PathLike | None = None,
            classes: list[str] | None = None) -> Dataset:
    """The description of a registered dataset, or of the IDX folder at `path` (name 'idx',
    which reads the folder's headers and labels); registered datasets take their own names
    unless `classes` renames them."""
    if name == USER_DATASET:
        from nnctl.data.folder import describe_folder

        return describe_folder(path, classes)
    dataset = get_dataset(name)
    if classes is not None:
        from dataclasses import replace

        dataset = replace(dataset, classes=tuple(classes))
    return dataset


def resolve_config(data) -> Dataset:
    """`resolve` for a config's data section."""
    return resolve(data.dataset, data.path, data.classes)


def load_split(dataset: Dataset, split: str, data_dir: str | os.PathLike | None = None,
               observer: DownloadObserver | None = None, download: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """One split ('train' or 'test'): images (n, pixels) uint8 and labels (n,)."""
    if dataset.path is not None:
        from nnctl.data.folder import load_folder_split

        return load_folder_split(dataset, split)
    from nnctl.data.mnist import load_split as load_cached_split

    return load_cached_split(split, data_dir, observer=observer, download=download,
                             dataset=dataset)


def to_record(dataset: Dataset) -> dict:
    """What a weights file keeps of the dataset a model was trained on."""
    return {"name": dataset.name, "title": dataset.title, "classes": list(dataset.classes),
            "image_shape": list(dataset.image_shape)}


def from_record(record: dict | None) -> Dataset:
    """The description a weights file recorded; MNIST for files that predate the record."""
    if record is None:
        return MNIST
    registered = DATASETS.get(record["name"])
    preparation = registered.preparation if registered else "raw"
    return Dataset(name=record["name"], title=record["title"],
                   classes=tuple(record["classes"]),
                   image_shape=tuple(record["image_shape"]), preparation=preparation)
