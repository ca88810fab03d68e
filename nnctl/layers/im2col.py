"""im2col and col2im for batch-major (N, height, width, channels) arrays.

im2col lays every kh x kw window of the padded input out as one row, its values in (kh, kw,
channels) order:

    cols[n, p, q, i, j, c] = x_padded[n, s p + i, s q + j, c]

so a convolution is one matrix product over the whole batch, (N OH OW, kh kw C) times
(kh kw C, filters). The copy is one call over a strided view (sliding_window_view), and
with channels last each window row is a contiguous run of kw C values.

With one channel those runs are short, so the columns are kept transposed instead, one
contiguous block per kernel offset (`offset_columns`): (kh kw, N OH OW), the windows' values
offset by offset. Each block is one strided copy of the input, and the product takes the
block matrix transposed, so no copy transposes it. (Copies per kernel offset into the
columns, directly or through a staging array, were faster than the one view only with one
channel, and slower than the transposed blocks there.)

col2im is im2col's adjoint: every column entry is added back to the input pixel it came
from. It runs as kh kw strided additions, one per kernel offset (i, j), each over the whole
batch; windows overlap, so a pixel gathers from every window that holds it. With few
channels the columns of one offset are short runs (C values, kh kw C apart), so they can
first be staged in (N, OH, kh, kw, OW, C) order, one copy that makes each offset's part of a
window row one run of OW C values, as it is in the input.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Array = np.ndarray


def im2col(padded: Array, kernel: tuple[int, int], stride: tuple[int, int],
           cols: Array) -> None:
    """Fill `cols`, shaped (N, OH, OW, kh, kw, C), with the windows of `padded`, in one copy
    from a sliding-window view."""
    (kh, kw), (sh, sw) = kernel, stride
    _, oh, ow = cols.shape[:3]
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    np.copyto(cols, windows[:, :oh, :ow].transpose(0, 1, 2, 4, 5, 3))


def offset_columns(padded: Array, kernel: tuple[int, int], stride: tuple[int, int],
                   out: Array) -> None:
    """Fill `out`, shaped (kh, kw, N, OH, OW), with the windows of a one-channel `padded`
    (N, height, width, 1), transposed: out[i, j, n, p, q] = x_padded[n, s p + i, s q + j],
    so out.reshape(kh kw, -1).T is im2col's columns."""
    (kh, kw), (sh, sw) = kernel, stride
    _, _, _, oh, ow = out.shape
    for i in range(kh):
        for j in range(kw):
            out[i, j] = padded[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, 0]


def _best_of_3(run) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def col2im(cols: Array, stride: tuple[int, int], padded: Array, staging: Array | None = None
           ) -> None:
    """padded <- the sum, for every input pixel, of the column entries taken from it; read
    through `staging`, shaped (N, OH, kh, kw, OW, C), when given. The sums are added in the
    same order either way, so the result is the same to the bit."""
    sh, sw = stride
    _, oh, ow, kh, kw, _ = cols.shape
    if staging is not None:
        np.copyto(staging, cols.transpose(0, 1, 3, 4, 2, 5))
    padded.fill(0)
    for i in range(kh):
        for j in range(kw):
            part = cols[:, :, :, i, j] if staging is None else staging[:, :, i, j]
            padded[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += part


def staging_for(cols: Array, stride: tuple[int, int], padded: Array) -> Array | None:
    """A staging array for col2im if staging is faster for these shapes, timed here (best
    of 3 each): it pays with few channels (LeNet-5's 6), not with many."""
    n, oh, ow, kh, kw, channels = cols.shape
    staging = np.empty((n, oh, kh, kw, ow, channels), cols.dtype)
    direct = _best_of_3(lambda: col2im(cols, stride, padded))
    staged = _best_of_3(lambda: col2im(cols, stride, padded, staging))
    return staging if staged < direct else None
