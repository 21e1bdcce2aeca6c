"""Average pooling over 2-D windows, and adaptive average pooling (PSPNet's pyramid bins).

avg_pool2d: the mean of each window,

    y[n, c, oy, ox] = sum over the window's pixels inside x of x[n, c, iy, ix] / divisor(oy, ox)

Windows and output size are max pooling's (``ops/pooling.py``): window (oy, ox) starts at row
oy*sH - pH, column ox*sW - pW; Ho = floor or ceil((H + 2*pH - kH) / sH) + 1, in ceil mode
minus one if the last window would start inside the bottom padding; padding <= kernel / 2.

The divisor follows PyTorch exactly. Per axis, with start = oy*sH - pH:

    end_pad = min(start + kH, H + pH)          the window clipped to the *padded* input
    lo, hi  = max(start, 0), min(end_pad, H)   the window clipped to the input
    count_include_pad=True:   divisor = (end_pad - start) * (the same for columns)
    count_include_pad=False:  divisor = (hi - lo) * (the same for columns)

so zero padding counts in the mean, but the overhang of a ceil-mode window past the padding
never does. Both divisors are a product of a row factor and a column factor.

Backward: each input pixel gathers from the windows covering it, dx[iy, ix] = sum of
dy[oy, ox] / divisor(oy, ox) over oy in [ceil((iy + pH - kH + 1) / sH), floor((iy + pH) / sH)]
and likewise ox (clipped to the output).

adaptive_avg_pool2d: output size (Ho, Wo) is given; bin (oy, ox) averages rows
[floor(oy*H/Ho), ceil((oy+1)*H/Ho)) and columns [floor(ox*W/Wo), ceil((ox+1)*W/Wo)) (PyTorch's
bins; neighbouring bins overlap by a pixel when H is not a multiple of Ho). PSPNet pools its
60x60 features to 1x1, 2x2, 3x3 and 6x6. Backward: input row iy lies in the bins
oy in [floor(iy*Ho/H), ceil((iy+1)*Ho/H) - 1] (derived from the two bin bounds), and

    dx[n, c, iy, ix] = sum over the bins (oy, ox) containing (iy, ix)
                       of dy[n, c, oy, ox] / count(oy, ox)

Sums are accumulated in float64 in the Numba kernels (a 1x1 bin of a 60x60 map adds 3600
float32 numbers). Worked example: adaptive_avg_pool2d of [[1, 2, 3]] to width 2 gives the bins
[0, 2) and [1, 3): [[1.5, 2.5]]; the middle pixel gets half of both bins' gradients.

The arguments are checked once, by ``functional.avg_pool2d`` / ``adaptive_avg_pool2d``
(``geometry.check_pool2d`` / ``check_adaptive_avg_pool2d``); the Functions trust them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet import backend
from minisegnet.arrays import array_module
from minisegnet.autograd import Function
from minisegnet.ops.geometry import adaptive_bins

__all__ = [
    "adaptive_bins",
    "avg_pool2d_forward_ref", "avg_pool2d_backward_ref", "avg_pool2d_forward_numba",
    "avg_pool2d_backward_numba", "adaptive_avg_pool2d_forward_ref",
    "adaptive_avg_pool2d_backward_ref", "adaptive_avg_pool2d_forward_numba",
    "adaptive_avg_pool2d_backward_numba", "AvgPool2d", "AdaptiveAvgPool2d",
]  # fmt: skip


# ----------------------------------------------------------------------------- geometry tables
def avg_windows(size, out, k, s, p, count_include_pad):
    """Per output index along one axis: the window [lo, hi) inside the input and the divisor
    factor (see the module docstring). Arrays of length ``out`` (int64)."""
    start = np.arange(out, dtype=np.int64) * s - p
    end_pad = np.minimum(start + k, size + p)
    lo, hi = np.maximum(start, 0), np.minimum(end_pad, size)
    factor = end_pad - start if count_include_pad else hi - lo
    return lo, hi, factor


def covering_windows(size, out, k, s, p):
    """Per input index along one axis: the first and last window covering it (int64 arrays of
    length ``size``; first > last when no window covers it)."""
    i = np.arange(size, dtype=np.int64)
    first = np.maximum(0, -((k - 1 - i - p) // s))  # ceil((i + p - k + 1) / s)
    last = np.minimum(out - 1, (i + p) // s)
    return first, last


def adaptive_covering(size, out):
    """Input index i lies in the bins floor(i*out/size) .. ceil((i+1)*out/size) - 1."""
    i = np.arange(size, dtype=np.int64)
    return (i * out) // size, ((i + 1) * out + size - 1) // size - 1


# ----------------------------------------------------------------------------- NumPy reference
def avg_pool2d_forward_ref(x, kernel, stride, padding, out_size, count_include_pad):
    """Reference: add up the window positions (ky, kx) that fall inside x, for all windows at
    once, then divide.  x (N, C, H, W) -> y (N, C, Ho, Wo)"""
    n_, c_, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_size
    rows = np.arange(ho)[:, None] * sh - ph  # (Ho, 1) first row of each window
    cols = np.arange(wo)[None, :] * sw - pw  # (1, Wo)
    total = np.zeros((n_, c_, ho, wo), np.float64)
    for ky in range(kh):
        for kx in range(kw):
            iy, ix = rows + ky, cols + kx
            inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)  # (Ho, Wo)
            v = x[:, :, np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)]
            total += np.where(inside, v, 0)
    _, _, fh = avg_windows(height, ho, kh, sh, ph, count_include_pad)
    _, _, fw = avg_windows(width, wo, kw, sw, pw, count_include_pad)
    return (total / (fh[:, None] * fw[None, :])).astype(x.dtype)


def avg_pool2d_backward_ref(dy, in_size, kernel, stride, padding, count_include_pad):
    """Reference: every window spreads dy / divisor over its pixels (strided adds into a
    padded dx; within one (ky, kx) no two windows hit the same pixel).
    dy (N, C, Ho, Wo) -> dx (N, C, H, W)"""
    n_, c_, ho, wo = dy.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    _, _, fh = avg_windows(in_size[0], ho, kh, sh, ph, count_include_pad)
    _, _, fw = avg_windows(in_size[1], wo, kw, sw, pw, count_include_pad)
    share = dy / (fh[:, None] * fw[None, :])  # (N, C, Ho, Wo)
    rows = max(in_size[0] + 2 * ph, (ho - 1) * sh + kh)
    cols = max(in_size[1] + 2 * pw, (wo - 1) * sw + kw)
    dx_pad = np.zeros((n_, c_, rows, cols), np.float64)
    for ky in range(kh):
        for kx in range(kw):
            dx_pad[:, :, ky : ky + (ho - 1) * sh + 1 : sh, kx : kx + (wo - 1) * sw + 1 : sw] += (
                share
            )
    return np.ascontiguousarray(dx_pad[:, :, ph : ph + in_size[0], pw : pw + in_size[1]], dy.dtype)


def adaptive_avg_pool2d_forward_ref(x, out_size):
    """Reference: the mean of every bin.  x (N, C, H, W) -> y (N, C, Ho, Wo)"""
    n_, c_, height, width = x.shape
    h0, h1 = adaptive_bins(height, out_size[0])
    w0, w1 = adaptive_bins(width, out_size[1])
    y = np.empty((n_, c_) + tuple(out_size), x.dtype)
    for oy in range(out_size[0]):
        for ox in range(out_size[1]):
            y[:, :, oy, ox] = x[:, :, h0[oy] : h1[oy], w0[ox] : w1[ox]].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward_ref(dy, in_size):
    """Reference: every bin spreads dy / count evenly over its pixels.
    dy (N, C, Ho, Wo) -> dx (N, C, H, W)"""
    n_, c_, ho, wo = dy.shape
    h0, h1 = adaptive_bins(in_size[0], ho)
    w0, w1 = adaptive_bins(in_size[1], wo)
    dx = np.zeros((n_, c_) + tuple(in_size), dy.dtype)
    for oy in range(ho):
        for ox in range(wo):
            count = (h1[oy] - h0[oy]) * (w1[ox] - w0[ox])
            dx[:, :, h0[oy] : h1[oy], w0[ox] : w1[ox]] += dy[:, :, oy, ox, None, None] / count
    return dx


# ----------------------------------------------------------------------------- Numba kernels
# Both ops are "sum a box, divide" forwards and "sum the boxes that contain me" backwards, so
# they share two kernels. A box is given per axis by tables computed once per call in NumPy:
# forward: lo/hi (the box of each output index) and a divisor factor; backward: first/last
# (the output indices whose box contains each input index). prange runs over (n, c) planes,
# each written by its iteration only (segmentation maps have many channels).
# Inner loops run over slices from index 0: a loop starting at a variable index makes Numba check
# every index for Python's negative wraparound, which stops LLVM from vectorising it (3x slower).


@njit(inline="never", cache=True)
def _box_mean_plane(x_plane, y_plane, row_lo, row_hi, col_lo, col_hi, div_rows, div_cols):
    """One (n, c) plane, separably: for each output row oy, first the column sums over the
    box rows (elementwise adds of whole input rows, which vectorise), then each box's columns."""
    width = x_plane.shape[1]
    ho, wo = y_plane.shape
    col_sums = np.empty(width, np.float64)  # sum over rows row_lo[oy]..row_hi[oy]-1 of x
    for oy in range(ho):
        for ix in range(width):
            col_sums[ix] = 0.0
        for iy in range(row_lo[oy], row_hi[oy]):
            x_row = x_plane[iy]
            for ix in range(width):
                col_sums[ix] += x_row[ix]
        for ox in range(wo):
            box = col_sums[col_lo[ox] : col_hi[ox]]
            acc = 0.0
            for j in range(box.shape[0]):
                acc += box[j]
            y_plane[oy, ox] = acc / (div_rows[oy] * div_cols[ox])


@njit(parallel=True, cache=True)
def _box_mean_kernel(x, y, row_lo, row_hi, col_lo, col_hi, div_rows, div_cols):
    """y[n, c, oy, ox] = sum of x over rows [row_lo[oy], row_hi[oy]) and columns
    [col_lo[ox], col_hi[ox]), divided by div_rows[oy] * div_cols[ox]. One (n, c) plane per
    prange iteration (segmentation feature maps have many channels)."""
    n_, c_, height, width = x.shape
    ho, wo = y.shape[2], y.shape[3]
    x_planes = x.reshape(n_ * c_, height, width)
    y_planes = y.reshape(n_ * c_, ho, wo)
    for plane in prange(n_ * c_):
        _box_mean_plane(
            x_planes[plane], y_planes[plane], row_lo, row_hi, col_lo, col_hi, div_rows, div_cols
        )


@njit(inline="never", cache=True)
def _box_gather_plane(share_plane, dx_plane, first_row, last_row, first_col, last_col, dx_row_buf):
    """dx_plane[iy, ix] = sum over the boxes containing (iy, ix) of share_plane[oy, ox].
    Separable: the input rows covered by the same box rows get the same dx row, so that row is
    built once (first the sums over the covering box rows for every box column, then per pixel
    the sum over its covering box columns) and copied to each of them."""
    height, width = dx_plane.shape
    wo = share_plane.shape[1]
    box_sums = np.empty(wo, np.float64)  # sum over covering oy of share[oy, ox]
    prev_first, prev_last = -1, -1
    for iy in range(height):
        if first_row[iy] != prev_first or last_row[iy] != prev_last:
            prev_first, prev_last = first_row[iy], last_row[iy]
            for ox in range(wo):
                acc = 0.0
                for oy in range(prev_first, prev_last + 1):
                    acc += share_plane[oy, ox]
                box_sums[ox] = acc
            for ix in range(width):
                acc = 0.0
                for ox in range(first_col[ix], last_col[ix] + 1):
                    acc += box_sums[ox]
                dx_row_buf[ix] = acc
        dx_row = dx_plane[iy]
        for ix in range(width):
            dx_row[ix] = dx_row_buf[ix]


@njit(parallel=True, cache=True)
def _box_gather_kernel(share, dx, first_row, last_row, first_col, last_col):
    """dx[n, c, iy, ix] = sum of share[n, c, oy, ox] over oy in [first_row[iy], last_row[iy]]
    and ox in [first_col[ix], last_col[ix]] (share = dy / divisor, computed beforehand).
    One (n, c) plane per prange iteration; each plane of dx is written by its iteration only."""
    n_, c_, ho, wo = share.shape
    height, width = dx.shape[2], dx.shape[3]
    share_planes = share.reshape(n_ * c_, ho, wo)
    dx_planes = dx.reshape(n_ * c_, height, width)
    for plane in prange(n_ * c_):
        dx_row_buf = np.empty(width, dx.dtype)  # one per plane, not per pixel
        _box_gather_plane(
            share_planes[plane],
            dx_planes[plane],
            first_row,
            last_row,
            first_col,
            last_col,
            dx_row_buf,
        )


def avg_pool2d_forward_numba(x, kernel, stride, padding, out_size, count_include_pad):
    """Numba: one (n, c) plane per prange iteration, float64 sums."""
    height, width = x.shape[2:]
    h0, h1, fh = avg_windows(
        height, out_size[0], kernel[0], stride[0], padding[0], count_include_pad
    )
    w0, w1, fw = avg_windows(
        width, out_size[1], kernel[1], stride[1], padding[1], count_include_pad
    )
    y = np.empty(x.shape[:2] + tuple(out_size), x.dtype)
    _box_mean_kernel(x, y, h0, h1, w0, w1, fh.astype(np.float64), fw.astype(np.float64))
    return y


def avg_pool2d_backward_numba(dy, in_size, kernel, stride, padding, count_include_pad):
    """Numba: dy / divisor once (NumPy, pooled size), then a gather per (n, c) plane."""
    ho, wo = dy.shape[2:]
    _, _, fh = avg_windows(in_size[0], ho, kernel[0], stride[0], padding[0], count_include_pad)
    _, _, fw = avg_windows(in_size[1], wo, kernel[1], stride[1], padding[1], count_include_pad)
    share = dy / (fh[:, None] * fw[None, :]).astype(dy.dtype)  # (N, C, Ho, Wo)
    dx = np.empty(dy.shape[:2] + tuple(in_size), dy.dtype)
    r0, r1 = covering_windows(in_size[0], ho, kernel[0], stride[0], padding[0])
    c0, c1 = covering_windows(in_size[1], wo, kernel[1], stride[1], padding[1])
    _box_gather_kernel(share, dx, r0, r1, c0, c1)
    return dx


def adaptive_avg_pool2d_forward_numba(x, out_size):
    """Numba: one (n, c) plane per prange iteration, float64 sums."""
    height, width = x.shape[2:]
    h0, h1 = adaptive_bins(height, out_size[0])
    w0, w1 = adaptive_bins(width, out_size[1])
    y = np.empty(x.shape[:2] + tuple(out_size), x.dtype)
    _box_mean_kernel(
        x, y, h0, h1, w0, w1, (h1 - h0).astype(np.float64), (w1 - w0).astype(np.float64)
    )
    return y


def adaptive_avg_pool2d_backward_numba(dy, in_size):
    """Numba: dy / count once (NumPy, pooled size), then a gather per (n, c) plane."""
    ho, wo = dy.shape[2:]
    h0, h1 = adaptive_bins(in_size[0], ho)
    w0, w1 = adaptive_bins(in_size[1], wo)
    share = dy / ((h1 - h0)[:, None] * (w1 - w0)[None, :]).astype(dy.dtype)  # (N, C, Ho, Wo)
    dx = np.empty(dy.shape[:2] + tuple(in_size), dy.dtype)
    r0, r1 = adaptive_covering(in_size[0], ho)
    c0, c1 = adaptive_covering(in_size[1], wo)
    _box_gather_kernel(share, dx, r0, r1, c0, c1)
    return dx


# ----------------------------------------------------------------------------- Functions
# Every host implementation of each kernel, by backend: the table a reader (and grep) reads;
# the CUDA wrappers of the same names live in cuda/pooling.py.
_KERNELS = {
    "avg_pool2d_forward": {"numpy": avg_pool2d_forward_ref, "numba": avg_pool2d_forward_numba},
    "avg_pool2d_backward": {"numpy": avg_pool2d_backward_ref, "numba": avg_pool2d_backward_numba},
    "adaptive_avg_pool2d_forward": {
        "numpy": adaptive_avg_pool2d_forward_ref,
        "numba": adaptive_avg_pool2d_forward_numba,
    },
    "adaptive_avg_pool2d_backward": {
        "numpy": adaptive_avg_pool2d_backward_ref,
        "numba": adaptive_avg_pool2d_backward_numba,
    },
}


def _impl(op: str):
    return backend.pick(op, **_KERNELS[op], cuda=backend.lazy("minisegnet.cuda.pooling", op))


class AvgPool2d(Function):
    fresh_gradients = True  # every backend's backward allocates dx for the call

    def forward(self, x, kernel, stride, padding, out_size, count_include_pad):
        self.save(
            in_size=tuple(x.shape[2:]),
            kernel=kernel,
            stride=stride,
            padding=padding,
            count_include_pad=count_include_pad,
        )
        x = array_module(x).ascontiguousarray(x)
        return _impl("avg_pool2d_forward")(x, kernel, stride, padding, out_size, count_include_pad)

    def backward(self, dy):
        s = self.saved
        dy = array_module(dy).ascontiguousarray(dy)
        return _impl("avg_pool2d_backward")(
            dy, s.in_size, s.kernel, s.stride, s.padding, s.count_include_pad
        )


class AdaptiveAvgPool2d(Function):
    fresh_gradients = True  # every backend's backward allocates dx for the call

    def forward(self, x, out_size):
        self.save(in_size=tuple(x.shape[2:]))
        x = array_module(x).ascontiguousarray(x)
        return _impl("adaptive_avg_pool2d_forward")(x, out_size)

    def backward(self, dy):
        dy = array_module(dy).ascontiguousarray(dy)
        return _impl("adaptive_avg_pool2d_backward")(dy, self.saved.in_size)
