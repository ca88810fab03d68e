"""im2col and col2im for batch-major (N, height, width, channels) arrays.

im2col lays every kh x kw window of the padded input out as one row, its values in (kh, kw,
channels) order:

    cols[n, p, q, i, j, c] = x_padded[n, s p + i, s q + j, c]

so a convolution is one matrix product over the whole batch, (N OH OW, kh kw C) times
(kh kw C, filters). The copy is one call over a strided view (sliding_window_view), and
with channels last each window row is a contiguous run of kw C values.

col2im is im2col's adjoint: every column entry is added back to the input pixel it came
from. It runs as kh kw strided additions, one per kernel offset (i, j), each over the whole
batch; windows overlap, so a pixel gathers from every window that holds it.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Array = np.ndarray


def im2col(padded: Array, kernel: tuple[int, int], stride: tuple[int, int],
           cols: Array, by_offset: bool = False) -> None:
    """Fill `cols`, shaped (N, OH, OW, kh, kw, C), with the windows of `padded`: in one
    copy from a sliding-window view, or `by_offset`, in kh kw strided copies, one per
    kernel offset (faster with one or two channels, where the view's inner runs are
    short)."""
    (kh, kw), (sh, sw) = kernel, stride
    _, oh, ow = cols.shape[:3]
    if by_offset:
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, i, j] = padded[:, i:i + sh * (oh - 1) + 1:sh,
                                             j:j + sw * (ow - 1) + 1:sw]
        return
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    np.copyto(cols, windows[:, :oh, :ow].transpose(0, 1, 2, 4, 5, 3))


def faster_route(padded: Array, kernel: tuple[int, int], stride: tuple[int, int],
                 cols: Array) -> bool:
    """Whether the by-offset copy beats the one-view copy for these shapes, timed here
    (best of 3 each): which wins depends on the channels, the kernel and the caches."""
    best = {}
    for by_offset in (False, True):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            im2col(padded, kernel, stride, cols, by_offset)
            times.append(time.perf_counter() - started)
        best[by_offset] = min(times)
    return best[True] < best[False]


def col2im(cols: Array, stride: tuple[int, int], padded: Array) -> None:
    """padded <- the sum, for every input pixel, of the column entries taken from it."""
    sh, sw = stride
    _, oh, ow, kh, kw, _ = cols.shape
    padded.fill(0)
    for i in range(kh):
        for j in range(kw):
            padded[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += cols[:, :, :, i, j]
