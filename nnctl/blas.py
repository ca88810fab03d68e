"""GEMM with beta, and AXPY, which NumPy does not expose, through the OpenBLAS NumPy loaded:

    add_product(out, left, right, alpha, beta):  out <- alpha * left^T right + beta * out
    affine(out, a, w, b):                         out <- a w^T + b
    product(out, a, b):                           out <- a b
    add_scaled(out, alpha, x):                    out <- alpha * x + out

An SGD step W -= lr * delta^T A done with NumPy forms the product (the BLAS first zeroes
the output), then makes a pass over W to subtract it. GEMM's beta does both in one call
that never writes the gradient matrix: for the 128x784 first layer of a 784-128-10 network
at batch 64, 75 us instead of 120 us on a 2-core machine (timeit, one call each). AXPY
does a momentum step's W -= v on both cores with wide vector instructions, where a NumPy
ufunc uses one core: 22 us instead of 98 us for a 512x784 matrix (timeit, in isolation).
This module calls `cblas_?gemm` and `cblas_?axpy` with ctypes in the OpenBLAS that NumPy's
wheels ship (scipy-openblas), the library NumPy has loaded already, with its thread pool
(held to one thread during training: nnctl/threads.py). A large GEMM is cut into blocks
that depend on its shape alone, run on nnctl's own threads (nnctl/parallel.py).
Where that library is not there, or a self-test against NumPy disagrees, the same update
is done with NumPy; small arrays always are, since there the ctypes call costs more than
it saves.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl import parallel

Array = np.ndarray
# Below these sizes (elements, multiply-adds) the ctypes call costs more than it saves.
SMALLEST = 1 << 15
SMALLEST_PRODUCT = 1 << 20
# Products are cut into blocks of at least this many multiply-adds, at most BLOCKS_MAX of
# them, with edges on multiples of ALIGN rows or columns. Each block repacks the other
# operand and a helper starts 50-100 us after it is woken, so smaller blocks cost more
# than they gain: with 2^21, an epoch of 784-512-512-10 on 2 threads took 1.45 times
# the GEMM floor, with 2^24 1.2 times (docs/performance.md).
BLOCK_WORK = 1 << 24
BLOCKS_MAX = 8
ALIGN = 16

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# scipy-openblas symbol suffixes and the integer width of their sizes (ILP64 or LP64)
_FLAVOURS = (("64_", ctypes.c_int64), ("", ctypes.c_int32))


@dataclass(frozen=True)
class _Kernels:
    gemm: ctypes._CFuncPtr
    axpy: ctypes._CFuncPtr


def _library_files() -> list[Path]:
    """Where NumPy's wheels keep their bundled OpenBLAS, on Linux, Windows and macOS."""
    here = Path(np.__file__).resolve().parent
    folders = (here.parent / "numpy.libs", here / ".dylibs", here / ".libs")
    return [path for folder in folders if folder.is_dir()
            for path in sorted(folder.iterdir()) if "openblas" in path.name]


def _bind(library: ctypes.CDLL, letter: str) -> _Kernels | None:
    real = ctypes.c_float if letter == "s" else ctypes.c_double
    pointer = ctypes.c_void_p
    for suffix, size in _FLAVOURS:
        gemm = getattr(library, f"scipy_cblas_{letter}gemm{suffix}", None)
        axpy = getattr(library, f"scipy_cblas_{letter}axpy{suffix}", None)
        if gemm is not None and axpy is not None:
            gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, size, size, size, real,
                             pointer, size, pointer, size, real, pointer, size]
            axpy.argtypes = [size, real, pointer, size, pointer, size]
            gemm.restype = axpy.restype = None
            return _Kernels(gemm, axpy)
    return None


def _agrees_with_numpy(kernels: _Kernels, dtype: type) -> bool:
    rng = np.random.default_rng(0)
    left, right = rng.random((5, 3)).astype(dtype), rng.random((5, 4)).astype(dtype)
    out = rng.random((3, 4)).astype(dtype)
    expected = -0.5 * left.T @ right + 0.25 * out
    kernels.gemm(_ROW_MAJOR, _TRANS, _NO_TRANS, 3, 4, 5, -0.5, left.ctypes.data, 3,
                 right.ctypes.data, 4, 0.25, out.ctypes.data, 4)
    x, y = rng.random(7).astype(dtype), rng.random(7).astype(dtype)
    sum_expected = 1.5 * x + y
    kernels.axpy(7, 1.5, x.ctypes.data, 1, y.ctypes.data, 1)
    return bool(np.allclose(out, expected, rtol=1e-5, atol=1e-6)
                and np.allclose(y, sum_expected, rtol=1e-5, atol=1e-6))


def _find_kernels() -> dict[np.dtype, _Kernels]:
    for path in _library_files():
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        found = {}
        for letter, dtype in (("s", np.float32), ("d", np.float64)):
            kernels = _bind(library, letter)
            if kernels is not None and _agrees_with_numpy(kernels, dtype):
                found[np.dtype(dtype)] = kernels
        if found:
            return found
    return {}


_KERNELS: dict[np.dtype, _Kernels] | None = None


def kernels() -> dict[np.dtype, _Kernels]:
    """The BLAS kernels found, by dtype; looked up once, on first use."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _find_kernels()
    return _KERNELS


def use_numpy_only(flag: bool = True) -> None:
    """Switch the BLAS route off (or back on): for tests of the NumPy route and comparisons."""
    global _KERNELS
    _KERNELS = {} if flag else _find_kernels()


def _blas_for(out: Array, *inputs: Array) -> _Kernels | None:
    if not out.flags.c_contiguous:
        return None
    found = kernels().get(out.dtype)
    if found is None or any(a.dtype != out.dtype or not a.flags.c_contiguous for a in inputs):
        return None
    return found


def _gemm(blas: _Kernels, out: Array, a: Array, b: Array, trans_a: bool, trans_b: bool,
          alpha: float, beta: float) -> None:
    """out <- alpha op(a) op(b) + beta out, all row-major; op(x) is x^T where trans_x.

    The product is cut into the blocks `partition` gives for its shape alone, and each
    block is one single-threaded GEMM over the whole inner dimension, whichever thread
    runs it: so every entry's sum is formed the same way with 1, 2 or N threads."""
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    lda, ldb = a.shape[1], b.shape[1]
    size = out.itemsize
    ta, tb = (_TRANS if trans_a else _NO_TRANS), (_TRANS if trans_b else _NO_TRANS)
    pa, pb, pc = a.ctypes.data, b.ctypes.data, out.ctypes.data
    by_rows, cuts = partition(m, n, k)
    if len(cuts) == 2:
        blas.gemm(_ROW_MAJOR, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, n)
        return
    gemm = blas.gemm

    def block(index: int) -> None:
        start, stop = cuts[index], cuts[index + 1]
        if by_rows:  # rows start:stop of out and of op(a)
            gemm(_ROW_MAJOR, ta, tb, stop - start, n, k, alpha,
                 pa + size * (start if trans_a else start * lda), lda, pb, ldb, beta,
                 pc + size * start * n, n)
        else:  # columns start:stop of out and of op(b)
            gemm(_ROW_MAJOR, ta, tb, m, stop - start, k, alpha, pa, lda,
                 pb + size * (start * ldb if trans_b else start), ldb, beta,
                 pc + size * start, n)

    parallel.run(block, len(cuts) - 1, (m, n, k, ta, tb))


def partition(m: int, n: int, k: int) -> tuple[bool, list[int]]:
    """How a product (m, k) x (k, n) is cut, from its shape alone: along the longer side of
    the output (a cut repacks the other operand once per block, and the shorter side's
    operand is the smaller), in BLOCKS_MAX or fewer blocks of at least BLOCK_WORK
    multiply-adds, their edges on multiples of ALIGN; returns (by rows, the cut points)."""
    by_rows = m >= n
    length = m if by_rows else n
    blocks = 1
    while (blocks < BLOCKS_MAX and m * n * k >= 2 * blocks * BLOCK_WORK
           and length >= 2 * blocks * ALIGN):
        blocks *= 2
    step = -(-length // (blocks * ALIGN)) * ALIGN
    cuts = list(range(0, length, step)) + [length]
    return by_rows, cuts


def add_product(out: Array, left: Array, right: Array, alpha: float, beta: float) -> None:
    """out <- alpha * left^T right + beta * out, for left (n, m), right (n, k), out (m, k)
    (or right (n,) and out (m,))."""
    blas = (_blas_for(out, left, right)
            if out.ndim == 2 and out.size * left.shape[0] >= SMALLEST_PRODUCT else None)
    if (blas is not None and left.shape[0] == right.shape[0]
            and out.shape == (left.shape[1], right.shape[1])):
        _gemm(blas, out, left, right, True, False, alpha, beta)
        return
    product = np.matmul(left.T, right)
    if beta != 1.0:
        out *= beta
    if alpha == -1.0:
        out -= product
    else:
        if alpha != 1.0:
            product *= alpha
        out += product


def _stored(a: Array) -> tuple[Array, bool]:
    """(the C-ordered array behind `a`, whether `a` is its transpose)."""
    if not a.flags.c_contiguous and a.T.flags.c_contiguous:
        return a.T, True
    return a, False


def affine(out: Array, a: Array, w: Array, b: Array) -> None:
    """out <- a w^T + b, a dense layer's z for the rows of a: b is copied in and the
    product added by GEMM's beta, which spares the product's zeroing and a pass. `a` may
    be the transpose of a C-ordered array (a conv layer's columns kept by offset)."""
    stored, trans_a = _stored(a)
    blas = _blas_for(out, stored, w, b) if out.size * a.shape[1] >= SMALLEST_PRODUCT else None
    if blas is not None and out.shape == (a.shape[0], w.shape[0]) and a.shape[1] == w.shape[1]:
        np.copyto(out, b)
        _gemm(blas, out, stored, w, trans_a, True, 1.0, 1.0)
    else:
        np.matmul(a, w.T, out=out)
        out += b


def product(out: Array, a: Array, b: Array) -> None:
    """out <- a b, for a (m, k), b (k, n), out (m, n): backprop's delta_l W_l, cut into
    blocks and run on nnctl's threads like the other large products. `a` and `b` may be
    transposes of C-ordered arrays."""
    (stored_a, trans_a), (stored_b, trans_b) = _stored(a), _stored(b)
    blas = (_blas_for(out, stored_a, stored_b) if out.size * a.shape[1] >= SMALLEST_PRODUCT
            else None)
    if blas is not None and out.shape == (a.shape[0], b.shape[1]) and a.shape[1] == b.shape[0]:
        _gemm(blas, out, stored_a, stored_b, trans_a, trans_b, 1.0, 0.0)
    else:
        np.matmul(a, b, out=out)


def add_scaled(out: Array, alpha: float, x: Array) -> None:
    """out <- alpha * x + out, for x and out of one shape."""
    blas = _blas_for(out, x) if out.size >= SMALLEST else None
    if blas is not None and x.shape == out.shape:
        blas.axpy(out.size, alpha, x.ctypes.data, 1, out.ctypes.data, 1)
    elif alpha == -1.0:
        out -= x
    elif alpha == 1.0:
        out += x
    else:
        out += alpha * x
