"""Max and average pooling over ph x pw windows moved by a stride, channel by channel.

Both run as ph pw strided operations over the whole batch, one per offset (i, j) in the
window: the view x[:, i::s, j::s] holds, for every output pixel, the input at that offset.

- max:  out = the largest of the ph pw views; the offset it came from (its argmax) is saved,
        and backward sends each output's gradient to that one input pixel (the first
        maximum of its window, on ties).
- avg:  out = the mean of the views; backward spreads each gradient evenly over its window.
"""

from __future__ import annotations

import numpy as np

from nnctl.layers.base import Array, Layer, Shape

Pair = tuple[int, int]


def pooled_size(size: Pair, window: Pair, stride: Pair) -> Pair:
    """Windows along each axis: floor((n - k) / s) + 1."""
    return tuple((n - k) // s + 1 for n, k, s in zip(size, window, stride))


class _Pool(Layer):
    def __init__(self, index: int, input_shape: Shape, size: Pair, stride: Pair,
                 dtype=np.float32):
        channels, height, width = input_shape
        self.size, self.stride = tuple(size), tuple(stride)
        oh, ow = pooled_size((height, width), self.size, self.stride)
        if oh < 1 or ow < 1:
            raise ValueError(f"layer {index}: a {self.size} pool does not fit in {height}x{width}")
        super().__init__(index, input_shape, (channels, oh, ow))
        self._dtype = np.dtype(dtype)
        self._overlaps = any(s < k for s, k in zip(self.stride, self.size))
        self._cropped = ((oh - 1) * self.stride[0] + self.size[0] < height
                         or (ow - 1) * self.stride[1] + self.size[1] < width
                         or any(s > k for s, k in zip(self.stride, self.size)))

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _views(self, x: Array):
        """(offset number, view of x at that offset in every window), for each offset."""
        _, oh, ow = self.output_shape
        (ph, pw), (sh, sw) = self.size, self.stride
        for i in range(ph):
            for j in range(pw):
                yield i * pw + j, x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]

    def _allocate(self, n: int) -> dict[str, Array]:
        channels, oh, ow = self.output_shape
        _, height, width = self.input_shape
        return {"out": np.empty((n, oh, ow, channels), self._dtype),
                "dx": np.empty((n, height, width, channels), self._dtype)}

    def _spread(self, dx: Array, parts: list) -> None:
        """dx <- each offset's part of the gradient put back at that offset's pixels. Parts
        are (ufunc, a, b) to write in place when windows do not overlap (every pixel is
        written once), arrays to add when they do."""
        if self._overlaps or self._cropped:
            dx.fill(0)
        for (_, view), part in zip(self._views(dx), parts):
            if self._overlaps:
                view += part
            else:
                ufunc, a, b = part
                ufunc(a, b, out=view)

    def _start(self, x: Array) -> dict[str, Array]:
        ws = self._ws = self.workspace(len(x), self._allocate)
        return ws

    def describe(self) -> str:
        size = "x".join(map(str, self.size))
        return size if self.stride == self.size else f"{size} stride {'x'.join(map(str, self.stride))}"


class MaxPool(_Pool):
    kind = "max_pool"

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        ws = self._start(x)
        out = ws["out"]
        views = [view for _, view in self._views(x)]
        np.copyto(out, views[0])
        for view in views[1:]:
            np.maximum(out, view, out=out)
        if training:
            self._argmax(ws, views, out)
        return out

    def _argmax(self, ws: dict[str, Array], views: list[Array], out: Array) -> None:
        """One boolean mask per offset, true where that offset holds the window's maximum
        (the first one, on ties): the argmax as masks, which bool operations fill 7x
        faster than an index array."""
        if "masks" not in ws:
            ws["masks"] = np.empty((len(views),) + out.shape, bool)
            ws["taken"] = np.empty(out.shape, bool)
        masks, taken = ws["masks"], ws["taken"]
        np.equal(views[0], out, out=masks[0])
        np.copyto(taken, masks[0])
        for mask, view in zip(masks[1:], views[1:]):
            np.equal(view, out, out=mask)
            np.greater(mask, taken, out=mask)  # and not taken
            np.logical_or(taken, mask, out=taken)

    def backward(self, delta: Array, need_input_grad: bool, factored: bool) -> Array | None:
        if not need_input_grad:
            return None
        dx, masks = self._ws["dx"], self._ws["masks"]
        delta = delta.reshape(masks.shape[1:])
        self._spread(dx, [delta * mask for mask in masks] if self._overlaps else
                     [(np.multiply, delta, mask) for mask in masks])
        return dx


class AvgPool(_Pool):
    kind = "avg_pool"

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        out = self._start(x)["out"]
        for offset, view in self._views(x):
            if offset == 0:
                np.copyto(out, view)
            else:
                out += view
        out *= np.asarray(1.0 / (self.size[0] * self.size[1]), out.dtype)
        return out

    def backward(self, delta: Array, need_input_grad: bool, factored: bool) -> Array | None:
        if not need_input_grad:
            return None
        dx = self._ws["dx"]
        share = np.asarray(1.0 / (self.size[0] * self.size[1]), dx.dtype)
        delta = delta.reshape(self._ws["out"].shape)
        count = self.size[0] * self.size[1]
        self._spread(dx, [delta * share] * count if self._overlaps else
                     [(np.multiply, delta, share)] * count)
        return dx
