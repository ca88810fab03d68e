"""Max and average pooling over ph x pw windows moved by a stride, channel by channel.

- max:  out = the largest value of each window; backward sends each output's gradient to
        the one input pixel that held it, through argmax masks saved by the forward pass.
        With STAGED_BELOW channels or more it runs over the ph pw views x[:, i::sh, j::sw],
        one per offset in the window (on ties, the topmost, then the leftmost maximum
        wins). Their contiguous runs are only C values long, slow with few channels, so
        with fewer a window's maximum is taken as the maximum over its columns of each
        column's maximum, in two stages: down the rows (ph views x[:, i::sh], whose rows
        are contiguous runs of W C values), then across the columns (pw views
        m[:, :, j::sw]), each saving which of its views won (on ties, the leftmost, then
        the topmost maximum wins). The two stages move more memory, so with many channels
        they are the slower.
        When the layer before has a relu, that layer passes z on and the pool applies the
        relu to its outputs and relu' to their gradients (Network pairs them): relu and max
        commute, the pool has a quarter as many values for 2x2 windows, and the gradient is
        the same to the bit. A window whose maximum is at most 0 gets no gradient either
        way; otherwise its maximum is positive, and the same pixel holds it in z as in
        relu(z).
- avg:  out = the mean of the ph pw views x[:, i::sh, j::sw], one per offset (i, j) in the
        window; backward spreads each gradient evenly over its window.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl.layers.base import Array, Layer, Shape

Pair = tuple[int, int]
# Channels under which max pooling runs in two stages. Two stages made 2x2 pools of
# LeNet-5's 6 and 16 channels 30% and 15% faster, and of Keras's mnist_convnet's 32
# channels 7% slower (one core, a batch of 32, forward and backward).
STAGED_BELOW = 32


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
        # per axis (rows, columns): window, stride, outputs, whether windows overlap, and
        # whether some pixels are in no window (a stride past the window, or a crop)
        self._axes = tuple((k, s, o, s < k, (o - 1) * s + k < n or s > k) for k, s, o, n in
                           zip(self.size, self.stride, (oh, ow), (height, width)))
        self._overlaps = any(axis[3] for axis in self._axes)
        self._cropped = any(axis[4] for axis in self._axes)

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
    below: Layer | None = None  # set by Network: the layer before, whose relu this may apply

    @property
    def applies_relu(self) -> bool:
        """Whether the layer before left its relu to this pool (base.Activated)."""
        return self.below is not None and self.below.relu_deferred

    @staticmethod
    def _along(x: Array, axis: int, window: int, stride: int, outputs: int, *_) -> list[Array]:
        """The `window` strided views of x along `axis` (1 rows, 2 columns), one per offset
        in the window."""
        span = stride * (outputs - 1) + 1
        return [x[:, i:i + span:stride] if axis == 1 else x[:, :, i:i + span:stride]
                for i in range(window)]

    def _between(self, n: int) -> tuple[int, int, int, int]:
        """The shape after the rows stage: every column, the pooled rows."""
        channels, oh, _ = self.output_shape
        return n, oh, self.input_shape[2], channels

    @property
    def _staged(self) -> bool:
        return self.input_shape[0] < STAGED_BELOW

    def _allocate(self, n: int) -> dict[str, Array]:
        if not self._staged:
            return super()._allocate(n)
        return super()._allocate(n) | {"rows": np.empty(self._between(n), self._dtype)}

    def _training_arrays(self, ws: dict[str, Array]) -> None:
        """The argmax masks and the gradient between the stages, made at the first
        training pass: inference needs neither."""
        if not self._staged:
            if "masks" not in ws:
                out = ws["out"].shape
                ws |= {"masks": np.empty((self.size[0] * self.size[1],) + out, bool),
                       "taken": np.empty(out, bool)}
            return
        if "row_masks" not in ws:
            between, out = ws["rows"].shape, ws["out"].shape
            (ph, pw) = self.size
            ws |= {"row_masks": np.empty((ph,) + between, bool),
                   "row_taken": np.empty(between, bool),
                   "col_masks": np.empty((pw,) + out, bool), "col_taken": np.empty(out, bool),
                   "drows": np.empty(between, self._dtype)}

    def floats_per_sample(self) -> int:
        return super().floats_per_sample() + self._staged * math.prod(self._between(1))

    def forward(self, x: Array, training: bool, rng: np.random.Generator | None) -> Array:
        ws = self._start(x)
        if training:
            self._training_arrays(ws)
        if self._staged:
            rows, cols = self._axes
            stages = ((self._along(x, 1, *rows), ws["rows"], "row_"),
                      (self._along(ws["rows"], 2, *cols), ws["out"], "col_"))
        else:
            stages = (([view for _, view in self._views(x)], ws["out"], ""),)
        for views, out, name in stages:
            if len(views) == 1:
                np.copyto(out, views[0])
            else:
                np.maximum(views[0], views[1], out=out)
            for view in views[2:]:
                np.maximum(out, view, out=out)
            if training:
                self._argmax(views, out, ws[f"{name}masks"], ws[f"{name}taken"])
        if self.applies_relu:
            np.maximum(ws["out"], 0.0, out=ws["out"])
        return ws["out"]

    @staticmethod
    def _argmax(views: list[Array], out: Array, masks: Array, taken: Array) -> None:
        """One boolean mask per view, true where that view holds the maximum (the first
        one, on ties): the argmax as masks, which bool operations fill 7x faster than an
        index array. Two views (a window 2 wide, the common case) need one comparison."""
        if len(views) == 2:
            np.greater(views[1], views[0], out=masks[1])
            np.logical_not(masks[1], out=masks[0])
            return
        np.equal(views[0], out, out=masks[0])
        np.copyto(taken, masks[0])
        for mask, view in zip(masks[1:], views[1:]):
            np.equal(view, out, out=mask)
            np.greater(mask, taken, out=mask)  # and not taken
            np.logical_or(taken, mask, out=taken)

    def backward(self, delta: Array, need_input_grad: bool, factored: bool) -> Array | None:
        if not need_input_grad:
            return None
        ws = self._ws
        delta = delta.reshape(ws["out"].shape)
        if self.applies_relu:  # relu' of the pooled value: its window's maximum of z
            np.multiply(delta, ws["out"] > 0.0, out=delta)
        if not self._staged:
            self._spread(ws["dx"], [delta * mask for mask in ws["masks"]] if self._overlaps
                         else [(np.multiply, delta, mask) for mask in ws["masks"]])
            return ws["dx"]
        rows, cols = self._axes
        for grad, target, axis, stage, masks in ((delta, ws["drows"], 2, cols, ws["col_masks"]),
                                                 (ws["drows"], ws["dx"], 1, rows, ws["row_masks"])):
            *_, overlap, gaps = stage
            if overlap or gaps:
                target.fill(0)
            for view, mask in zip(self._along(target, axis, *stage), masks):
                if overlap:
                    view += grad * mask
                else:
                    np.multiply(grad, mask, out=view)
        return ws["dx"]


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
