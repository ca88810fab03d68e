"""End to end on the real MNIST and Fashion-MNIST, served over HTTP from ../shared/."""

import numpy as np
import pytest

from nnctl.data.datasets import DATASETS
from nnctl.data.mnist import inspect_cache, load_mnist
from nnctl.data.scaler import MinMaxScaler

COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
REAL = {  # the shared folder's fixture, training counts per class, mean scaled pixel
    "mnist": ("shared_mnist", COUNTS, 0.1307),
    "fashion-mnist": ("shared_fashion_mnist", [6000] * 10, 0.2860),
}


@pytest.mark.parametrize("name", list(REAL))
def test_download_load_and_scale_the_real_files(tmp_path, serve, request, name):
    fixture, counts, mean = REAL[name]
    dataset = DATASETS[name]
    mirror = serve(request.getfixturevalue(fixture))
    mnist = load_mnist(tmp_path, sources=[mirror.url], dataset=dataset)
    assert len(mirror.requests) == 4
    assert mnist.train_images.shape == (60000, 784)
    assert mnist.test_images.shape == (10000, 784)
    assert np.bincount(mnist.train_labels).tolist() == counts
    scaled = MinMaxScaler.fit(mnist.train_images).transform(mnist.train_images)
    assert scaled.dtype == np.float32
    assert round(float(scaled.mean(dtype=np.float64)), 4) == mean
    load_mnist(tmp_path, sources=[mirror.url], dataset=dataset)
    assert len(mirror.requests) == 4  # the second run reads the cache
    report = inspect_cache(tmp_path, dataset)
    assert all(f.verified for f in report)
    assert report[1].class_counts == counts
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
