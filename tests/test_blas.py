"""The BLAS updates (blas.py) against NumPy, through both routes (see the `route` fixture)."""

import numpy as np
import pytest

from nnctl import blas


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha, beta", [(-1.0, 1.0), (0.5, 0.9), (2.0, 0.0)])
def test_add_product_is_alpha_left_t_right_plus_beta_out(route, dtype, alpha, beta):
    rng = np.random.default_rng(0)
    left, right = rng.random((64, 200), dtype), rng.random((64, 300), dtype)
    out = rng.random((200, 300), dtype)
    expected = alpha * (left.astype(np.float64).T @ right) + beta * out
    blas.add_product(out, left, right, alpha, beta)
    assert out.dtype == dtype
    assert np.allclose(out, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [-1.0, 1.0, -1.9])
def test_add_scaled_is_alpha_x_plus_out(route, dtype, alpha):
    rng = np.random.default_rng(2)
    x, out = rng.random((300, 200), dtype), rng.random((300, 200), dtype)
    expected = alpha * x.astype(np.float64) + out
    blas.add_scaled(out, alpha, x)
    assert out.dtype == dtype
    assert np.allclose(out, expected, rtol=1e-6, atol=1e-6)
    small = np.ones(5, dtype)
    blas.add_scaled(small, alpha, np.arange(5, dtype=dtype))
    assert np.allclose(small, 1 + alpha * np.arange(5))


def test_add_product_takes_vectors_and_views_the_blas_cannot(route):
    rng = np.random.default_rng(1)
    left = rng.random((300, 64), np.float32).T  # not C-contiguous
    right = rng.random((64, 200), np.float32)
    out = rng.random((300, 200), np.float32)
    expected = out - left.T @ right
    blas.add_product(out, left, right, -1.0, 1.0)
    assert np.allclose(out, expected, rtol=1e-5, atol=1e-4)
    bias = np.ones(300, np.float32)
    blas.add_product(bias, left, np.ones(64, np.float32), 1.0, 0.5)
    assert np.allclose(bias, 0.5 + left.sum(axis=0), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, inputs, outputs", [(128, 784, 512), (3, 5, 4)])
def test_affine_is_a_w_transposed_plus_b(route, dtype, rows, inputs, outputs):
    rng = np.random.default_rng(7)
    a, w = rng.random((rows, inputs), dtype), rng.random((outputs, inputs), dtype)
    b, out = rng.random(outputs, dtype), np.full((rows, outputs), np.nan, dtype)
    blas.affine(out, a, w, b)
    assert np.allclose(out, a.astype(np.float64) @ w.T + b, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, inner, cols", [(128, 512, 512), (3, 5, 4)])
def test_product_is_a_b(route, dtype, rows, inner, cols):
    rng = np.random.default_rng(6)
    a, b = rng.random((rows, inner), dtype), rng.random((inner, cols), dtype)
    out = np.full((rows, cols), np.nan, dtype)
    blas.product(out, a, b)
    assert np.allclose(out, a.astype(np.float64) @ b, rtol=1e-5)


def test_the_numpy_route_is_taken_where_the_blas_cannot_be(route):
    """Mixed dtypes and transposed views: the result is still right."""
    rng = np.random.default_rng(8)
    a = rng.random((512, 128), np.float32).T  # a view, not C-contiguous
    w, b = rng.random((256, 512), np.float32), rng.random(256, np.float32)
    out = np.empty((128, 256), np.float32)
    blas.affine(out, a, w, b)
    assert np.allclose(out, a @ w.T + b, rtol=1e-5)
    target, x = rng.random((512, 256)).astype(np.float32), rng.random((512, 256))
    expected = target - 0.5 * x
    blas.add_scaled(target, -0.5, x)  # float64 into float32
    assert np.allclose(target, expected, rtol=1e-5, atol=1e-6)


def test_big_arrays_go_through_the_blas(monkeypatch):
    """Where the kernels were found, big float32 work reaches them (the speed is the point)."""
    if not blas.kernels():
        pytest.skip("no scipy-openblas kernels found in this NumPy")
    real, calls = blas.kernels()[np.dtype(np.float32)], []

    def spy(name):
        def call(*args):
            calls.append(name)
            getattr(real, name)(*args)
        return call

    monkeypatch.setitem(blas.kernels(), np.dtype(np.float32), blas._Kernels(spy("gemm"),
                                                                            spy("axpy")))
    rng = np.random.default_rng(9)
    a, w = rng.random((64, 784), np.float32), rng.random((128, 784), np.float32)
    z = np.empty((64, 128), np.float32)
    blas.affine(z, a, w, np.zeros(128, np.float32))
    blas.add_product(w, z, a, -1.0, 1.0)
    blas.add_scaled(w, 0.5, np.ones_like(w))
    blocks = [len(blas.partition(*shape)[1]) - 1 for shape in ((64, 128, 784), (128, 784, 64))]
    assert blocks == [1, 1]  # a product this size is not worth cutting
    assert calls == ["gemm"] * sum(blocks) + ["axpy"]
