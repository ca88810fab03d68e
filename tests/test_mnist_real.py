"""End to end on the real MNIST, served over HTTP from ../shared/mnist."""

import numpy as np

from nnctl.data.mnist import inspect_cache, load_mnist
from nnctl.data.scaler import MinMaxScaler

COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_download_load_and_scale_the_real_files(tmp_path, shared_mnist, serve):
    mirror = serve(shared_mnist)
    mnist = load_mnist(tmp_path, sources=[mirror.url])
    assert len(mirror.requests) == 4
    assert mnist.train_images.shape == (60000, 784)
    assert mnist.test_images.shape == (10000, 784)
    assert np.bincount(mnist.train_labels).tolist() == COUNTS
    scaled = MinMaxScaler.fit(mnist.train_images).transform(mnist.train_images)
    assert scaled.dtype == np.float32
    assert round(float(scaled.mean(dtype=np.float64)), 4) == 0.1307
    load_mnist(tmp_path, sources=[mirror.url])
    assert len(mirror.requests) == 4  # the second run reads the cache
    report = inspect_cache(tmp_path)
    assert all(f.verified for f in report)
    assert report[1].class_counts == COUNTS
