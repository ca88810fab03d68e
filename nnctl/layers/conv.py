"""The 2D convolution layer, as one matrix product per batch (im2col).

Each filter f is a kh x kw x C block of weights w_f and a bias b_f; its output at (p, q)
is the dot product of w_f with the input window under it, plus b_f:

    z[n, p, q, f] = sum_{i, j, c} w[f, i, j, c] x_pad[n, s p + i, s q + j, c] + b[f]

Write the windows as rows of a matrix X (im2col: N OH OW rows, kh kw C columns) and the
filters as rows of W (filters x kh kw C), and this is the dense layer's formula over the
windows of the whole batch: Z = X W^T + b. So backprop is the dense layer's too, with the
windows as the inputs:

    dL/dW = delta^T X        dL/db = sum over all windows of delta        dL/dX = delta W

and dL/dx adds each entry of dL/dX back to the pixel it was copied from (col2im); with
stride 1 and few channels, by rows of a wider product instead (_input_grad_by_rows). With one
input channel (a first layer on grey images) X is kept transposed, offset by offset
(`offset_columns`): X^T is then kh kw strided copies of the input, Z = (X^T)^T W^T is one
product, and dL/dW = (X^T delta)^T. In the
weights file a kernel is (filters, channels, kh, kw), the layout of PyTorch and Caffe; in
memory W is the (filters, kh kw C) matrix the product wants.
"""

from __future__ import annotations

import numpy as np

from nnctl.activations import Activation
from nnctl.blas import affine, product
from nnctl.layers.base import Activated, Array, Shape, activation_text
from nnctl.layers.im2col import col2im, im2col, offset_columns, staging_for
from nnctl.parameter import Parameter

Pair = tuple[int, int]
# Input channels up to which a stride-1 layer forms dL/dx by rows (_input_grad_by_rows):
# for a batch of 32, LeNet-5's second layer (6 channels, 5x5) took 0.63 ms against 0.92 ms,
# 3 channels 1.9 ms against 3.8 ms, 16 channels 0.98 ms against 1.07 ms; 24 channels 2.6 ms
# against 2.0 ms, 32 the same (one core, best of 5 timings of 200 calls).
ROWS_UP_TO = 16


def padding_for(size: Pair, kernel: Pair, stride: Pair, padding: str | int | Pair
                ) -> tuple[Pair, Pair]:
    """(top, bottom), (left, right) padding: 'valid' none, 'same' enough for ceil(size /
    stride) outputs (the extra pixel, if any, at the bottom and right, as Keras does), or
    a number of pixels on every side, or (rows, columns)."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        pads = []
        for n, k, s in zip(size, kernel, stride):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads[0], pads[1]
    rows, cols = (padding, padding) if isinstance(padding, int) else padding
    return (rows, rows), (cols, cols)


def output_size(size: Pair, kernel: Pair, stride: Pair, pads: tuple[Pair, Pair]) -> Pair:
    """Windows along each axis: floor((n + padding - k) / s) + 1, 0 or less if none fit."""
    return tuple((n + sum(p) - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, pads))


class Conv2D(Activated):
    kind = "conv"

    def __init__(self, index: int, input_shape: Shape, w: Array, b: Array, kernel: Pair,
                 stride: Pair, padding: str | int | Pair, activation: Activation):
        channels, height, width = input_shape
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.pads = padding_for((height, width), self.kernel, self.stride, padding)
        self.padding = padding
        oh, ow = output_size((height, width), self.kernel, self.stride, self.pads)
        filters = w.shape[0]
        if w.shape != (filters, self.kernel[0] * self.kernel[1] * channels) or b.shape != (filters,):
            raise ValueError(f"layer {index}: W {w.shape} and b {b.shape} do not fit "
                             f"{filters} {self.kernel} kernels over {channels} channels")
        if oh < 1 or ow < 1:
            raise ValueError(f"layer {index}: a {self.kernel} kernel does not fit in "
                             f"{height}x{width} with padding {padding}")
        super().__init__(index, input_shape, (filters, oh, ow))
        self._padded = any(self.pads[0] + self.pads[1])
        self._by_offset = channels == 1  # the columns kept transposed (offset_columns)
        self._by_rows = self.stride == (1, 1) and channels <= ROWS_UP_TO
        self.activation = activation
        self.params = [Parameter.of(f"W{index}", np.ascontiguousarray(w), True),
                       Parameter.of(f"b{index}", np.ascontiguousarray(b), False)]

    def _allocate(self, n: int) -> dict[str, Array]:
        channels, height, width = self.input_shape
        filters, oh, ow = self.output_shape
        (top, bottom), (left, right) = self.pads
        kh, kw = self.kernel
        dtype, rows = self.dtype, n * oh * ow
        padded = (n, height + top + bottom, width + left + right, channels)
        cols = (kh, kw, n, oh, ow) if self._by_offset else (n, oh, ow, kh, kw, channels)
        return {"padded": np.zeros(padded if self._padded else (0,), dtype),
                "cols": np.empty(cols, dtype),
                "z": np.empty((rows, filters), dtype), "a": np.empty((rows, filters), dtype),
                "ones": np.ones(rows, dtype)}

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        n = len(x)
        ws = self._ws = self.workspace(n, self._allocate)
        padded = ws["padded"] if self._padded else x
        if self._padded:
            (top, _), (left, _) = self.pads
            _, height, width = self.input_shape
            padded[:, top:top + height, left:left + width] = x
        if self._by_offset:
            offset_columns(padded, self.kernel, self.stride, ws["cols"])
            self.cols = ws["cols"].reshape(-1, len(ws["z"])).T
        else:
            im2col(padded, self.kernel, self.stride, ws["cols"])
            self.cols = ws["cols"].reshape(len(ws["z"]), -1)
        self.z = ws["z"]
        affine(self.z, self.cols, self.params[0].value, self.params[1].value)
        self._activate(ws)
        filters, oh, ow = self.output_shape
        return self.a.reshape(n, oh, ow, filters)

    def backward_z(self, dz: Array, need_input_grad: bool, factored: bool) -> Array | None:
        w, b = self.params
        ws = self._ws
        if factored:
            w.factors, b.factors = (dz, self.cols), (dz, ws["ones"])
        else:
            w.factors = b.factors = None
            if self._by_offset:  # (X^T delta)^T: X^T is the array held, one product
                if "grad_t" not in ws:
                    ws["grad_t"] = np.empty(w.grad.shape[::-1], self.dtype)
                np.matmul(self.cols.T, dz, out=ws["grad_t"])
                np.copyto(w.grad, ws["grad_t"].T)
            else:
                np.matmul(dz.T, self.cols, out=w.grad)
            np.matmul(ws["ones"], dz, out=b.grad)
        if not need_input_grad:
            return None
        if self._by_rows:
            return self._input_grad_by_rows(dz, w.value)
        if "dcols" not in ws:
            channels, height, width = self.input_shape
            _, oh, ow = self.output_shape
            ws["dcols"] = np.zeros((len(dz) // (oh * ow), oh, ow) + self.kernel + (channels,),
                                   self.dtype)  # zeros: staging_for times it
            ws["dpadded"] = np.empty_like(ws["padded"])
            ws["dx"] = np.empty((len(ws["dcols"]), height, width, channels), self.dtype)
            ws["staging"] = staging_for(ws["dcols"], self.stride,
                                        ws["dpadded"] if self._padded else ws["dx"])
        dcols, dx = ws["dcols"], ws["dx"]
        product(dcols.reshape(len(dz), -1), dz, w.value)
        if not self._padded:
            col2im(dcols, self.stride, dx, ws["staging"])
            return dx
        col2im(dcols, self.stride, ws["dpadded"], ws["staging"])
        (top, _), (left, _) = self.pads
        _, height, width = self.input_shape
        np.copyto(dx, ws["dpadded"][:, top:top + height, left:left + width])
        return dx

    def _input_grad_by_rows(self, dz: Array, w: Array) -> Array:
        """dL/dx for stride 1 without col2im's short runs. dz is laid in a zeroed grid as
        wide as the padded input, (N, OH, Wp, filters), so that G = W^T dz_wide^T has one
        row per kernel offset (i, j) and channel c, over (n, p, x), and that row adds into
        channel c's plane of dL/dx_padded shifted by i Wp + j: G[i, j, c, n, p, x] goes to
        (n, p + i, x + j), as im2col took x_padded[n, p + i, q + j] for window (p, q). The
        columns x past OW are zeros; only they wrap into the next row or past the end. The
        sums are added in the same order as by col2im, offset by offset."""
        ws = self._ws
        channels, height, width = self.input_shape
        filters, oh, ow = self.output_shape
        (top, bottom), (left, right) = self.pads
        hp, wp = height + top + bottom, width + left + right
        n = len(dz) // (oh * ow)
        if "dz_wide" not in ws:
            ws |= {"dz_wide": np.zeros((n, oh, wp, filters), self.dtype),
                   "grid_rows": np.empty((w.shape[1], n * oh * wp), self.dtype),
                   "planes": np.empty((channels, n, hp * wp), self.dtype),
                   "dx": np.empty((n, height, width, channels), self.dtype)}
        wide, rows, planes = ws["dz_wide"], ws["grid_rows"], ws["planes"]
        wide[:, :, :ow] = dz.reshape(n, oh, ow, filters)
        product(rows, w.T, wide.reshape(-1, filters).T)
        kh, kw = self.kernel
        by_offset = rows.reshape(kh, kw, channels, n, oh * wp)
        planes.fill(0)
        for i in range(kh):
            for j in range(kw):
                shift = i * wp + j
                length = min(oh * wp, hp * wp - shift)
                planes[:, :, shift:shift + length] += by_offset[i, j, :, :, :length]
        inside = planes.reshape(channels, n, hp, wp)[:, :, top:top + height, left:left + width]
        np.copyto(ws["dx"], inside.transpose(1, 2, 3, 0))
        return ws["dx"]

    def floats_per_sample(self) -> int:
        """The columns (kh kw C per output pixel), z and a, and the padded input."""
        filters, oh, ow = self.output_shape
        kh, kw = self.kernel
        return oh * ow * (kh * kw * self.input_shape[0] + 2 * filters) + super().floats_per_sample()

    def arrays(self) -> dict[str, Array]:
        w, b = self.params
        filters = w.value.shape[0]
        kh, kw = self.kernel
        kernels = w.value.reshape(filters, kh, kw, -1).transpose(0, 3, 1, 2)
        return {w.name: kernels, b.name: b.value}

    def load_arrays(self, arrays: dict[str, Array]) -> None:
        w, b = self.params
        kernels = arrays[w.name]
        w.value[...] = kernels.transpose(0, 2, 3, 1).reshape(w.value.shape)
        b.value[...] = arrays[b.name]

    def describe(self) -> str:
        kernel = "x".join(map(str, self.kernel))
        stride = "" if self.stride == (1, 1) else f" stride {'x'.join(map(str, self.stride))}"
        padding = self.padding if isinstance(self.padding, str) else f"pad {self.padding}"
        return f"{kernel} {padding}{stride}, {activation_text(self.activation)}"
