"""Max pooling over 2-D windows, and the switches (argmax positions) that unpooling reuses.

    y[n, c, oy, ox] = max over ky < kH, kx < kW of x_pad[n, c, oy*sH - pH + ky, ox*sW - pW + kx]

where x_pad is x with pH rows / pW columns of -infinity on each side (padding is never chosen).

Shapes:  x (N, C, H, W) -> y (N, C, Ho, Wo) and switches idx (N, C, Ho, Wo)

    Ho = floor((H + 2*pH - kH) / sH) + 1                       (ceil_mode=False)
    Ho = ceil((H + 2*pH - kH) / sH) + 1, then Ho -= 1 if (Ho - 1)*sH >= H + pH
                                                               (ceil_mode=True)
    (the same for Wo). In ceil mode the last window may hang over the bottom/right padding, but
    it must start inside the input or the top/left padding (PyTorch's rule, also Caffe's).
    Padding is at most half the kernel (pH <= kH // 2), so every window covers at least one
    input pixel.

Switches (indices): the position of the maximum *inside its window*, ``ky*kW + kx`` in row-major
order, stored as uint8 when kH*kW <= 256 (every window up to 16x16) and int32 otherwise. One byte
per pooled value is SegNet's point: PyTorch stores the flat position ``iy*W + ix`` of the input
plane as int64, eight bytes. ``to_flat_indices`` / ``from_flat_indices`` convert between the two.
A switch is meaningless without the geometry it was recorded with, so ``max_pool2d`` returns it
as a :class:`PoolIndices`, which carries kernel, stride, padding and the input size (H, W) and
lets unpooling refuse switches from a different layer.

Ties: the first maximum in row-major order wins (windows are scanned ky, then kx, and a value
replaces the running maximum only if it is strictly greater). A NaN counts as larger than every
number (the first NaN of a window wins), so NaNs propagate as in PyTorch.

Backward: each input pixel gathers dy from every window that covers it and whose switch points
at it (windows overlap when the stride is smaller than the kernel, e.g. 3x3 stride 2):

    dx[n, c, iy, ix] = sum over (oy, ox) with oy*sH - pH + ky == iy, ox*sW - pW + kx == ix
                       and idx[n, c, oy, ox] == ky*kW + kx   of   dy[n, c, oy, ox]

The windows covering row iy are oy in [ceil((iy + pH - kH + 1) / sH), floor((iy + pH) / sH)]
(clipped to [0, Ho)), and the same for columns. Every destination is computed by one worker
only (a CUDA thread per input pixel; a Numba prange iteration per row of dx, which builds its
row from the window rows covering it), so there is no scatter and no race, and the result is
deterministic. This "place each value at its switch, summing collisions" map is also exactly
max unpooling (``ops/unpooling.py`` reuses it).

Numba fast paths (same results, checked against the reference by the tests): kernel 2, stride
2, padding 0 (SegNet's and VGG's pool) has an unrolled forward; when windows tile the plane
(kernel == stride) every input pixel lies in at most one window, and the backward writes each
window's block of dx directly (the gather over one window).

The arguments are checked once, by ``functional.max_pool2d`` (``geometry.check_nchw``,
``geometry.pool_geometry``, ``geometry.pool_output_size``); the Function trusts them.

Worked example (kernel 2, stride 2):

    x = [[1, 5, 2, 0],      y = [[5, 2],      idx = [[1, 0],      (1 = top right,
         [3, 4, 2, 1]]                                              0 = top left; 2 ties 2:
                                                                    the first one wins)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet import backend
from minisegnet.arrays import ArrayHolder, array_module
from minisegnet.autograd import Function
from minisegnet.ops.geometry import pair, pool_geometry, pool_output_size, switch_dtype
from minisegnet.tensor import Tensor

__all__ = [
    "PoolIndices", "to_flat_indices", "from_flat_indices", "pool_output_size",
    "switch_dtype", "max_pool2d_forward_ref", "max_pool2d_backward_ref",
    "max_pool2d_forward_numba", "max_pool2d_backward_numba", "MaxPool2d",
]  # fmt: skip


def _window_origins(xp, out_size, stride, padding):
    """First input row of every window row (Ho, 1) and first input column (1, Wo)."""
    rows = xp.arange(out_size[0]) * stride[0] - padding[0]
    cols = xp.arange(out_size[1]) * stride[1] - padding[1]
    return rows[:, None], cols[None, :]


# ----------------------------------------------------------------------------- NumPy reference
def max_pool2d_forward_ref(x, kernel, stride, padding, out_size):
    """Reference: scan the window positions (ky, kx) in row-major order, for all windows at
    once, keeping the running maximum; a later value wins only if strictly greater.

    x (N, C, H, W) -> y (N, C, Ho, Wo), idx (N, C, Ho, Wo) window positions ky*kW + kx
    """
    n_, c_, height, width = x.shape
    (kh, kw), (ho, wo) = kernel, out_size
    rows, cols = _window_origins(np, out_size, stride, padding)  # (Ho, 1), (1, Wo)
    y = np.zeros((n_, c_, ho, wo), x.dtype)
    idx = np.zeros((n_, c_, ho, wo), switch_dtype(kernel))
    found = np.zeros((ho, wo), bool)  # has the window seen an input pixel yet?
    for ky in range(kh):
        for kx in range(kw):
            iy, ix = rows + ky, cols + kx
            inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)  # (Ho, Wo)
            v = x[:, :, np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)]  # (N, C, Ho, Wo)
            nan_first = np.isnan(v) & ~np.isnan(y)
            better = inside & (~found | (v > y) | nan_first)
            y = np.where(better, v, y)
            idx[better] = ky * kw + kx
            found |= inside
    return y, idx


def max_pool2d_backward_ref(dy, idx, in_size, kernel, stride, padding):
    """Reference: for each window position (ky, kx), add dy into the input pixel at that
    position of every window whose switch is (ky, kx). (A NumPy strided add over a padded dx;
    within one (ky, kx) no two windows hit the same pixel, so the += has no collisions.)

    dy (N, C, Ho, Wo), idx (N, C, Ho, Wo) -> dx (N, C, H, W)
    """
    n_, c_, ho, wo = dy.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    # Room for every window, including ceil-mode windows hanging over the bottom/right.
    rows = max(in_size[0] + 2 * ph, (ho - 1) * sh + kh)
    cols = max(in_size[1] + 2 * pw, (wo - 1) * sw + kw)
    dx_pad = np.zeros((n_, c_, rows, cols), dy.dtype)
    for ky in range(kh):
        for kx in range(kw):
            chosen = np.where(idx == ky * kw + kx, dy, 0)  # (N, C, Ho, Wo)
            dx_pad[:, :, ky : ky + (ho - 1) * sh + 1 : sh, kx : kx + (wo - 1) * sw + 1 : sw] += (
                chosen
            )
    return np.ascontiguousarray(dx_pad[:, :, ph : ph + in_size[0], pw : pw + in_size[1]])


# ----------------------------------------------------------------------------- Numba kernels
# The prange loops run over output (or input) rows (n, c, row); each iteration owns its row of
# the destination, so no two threads ever write the same element. The per-row work sits in a
# separate (non-inlined) function: Numba optimises that loop much better than the same code
# inside the prange body. Comparisons are written without short-circuits so LLVM can turn them
# into selects (random data makes a branch per pixel mispredict half the time).


@njit(inline="never", cache=True)
def _max_pool_row(x_plane, y_row, idx_row, y0, ky_lo, ky_hi, kw, sw, pw):
    """One output row: for each window, the first maximum (strict >) and its position."""
    width = x_plane.shape[1]
    for ox in range(y_row.shape[0]):
        x0 = ox * sw - pw  # first input column of the window
        kx_lo, kx_hi = max(0, -x0), min(kw, width - x0)  # the window's columns inside x
        best = x_plane[y0 + ky_lo, x0 + kx_lo]
        best_k = ky_lo * kw + kx_lo
        for ky in range(ky_lo, ky_hi):
            for kx in range(kx_lo, kx_hi):
                v = x_plane[y0 + ky, x0 + kx]
                better = (v > best) | ((v != v) & (best == best))  # a NaN beats any number
                best = v if better else best
                best_k = ky * kw + kx if better else best_k
        y_row[ox] = best
        idx_row[ox] = best_k


@njit(parallel=True, cache=True)
def _max_pool_kernel(x, y, idx, kh, kw, sh, sw, ph, pw):
    n_, c_, height, width = x.shape
    ho, wo = y.shape[2], y.shape[3]
    x_planes = x.reshape(n_ * c_, height, width)
    y_planes = y.reshape(n_ * c_, ho, wo)
    idx_planes = idx.reshape(n_ * c_, ho, wo)
    for row in prange(n_ * c_ * ho):  # one output row (plane n*C + c, oy) per iteration
        plane, oy = row // ho, row % ho
        y0 = oy * sh - ph  # first input row of the windows
        ky_lo, ky_hi = max(0, -y0), min(kh, height - y0)
        _max_pool_row(
            x_planes[plane],
            y_planes[plane, oy],
            idx_planes[plane, oy],
            y0,
            ky_lo,
            ky_hi,
            kw,
            sw,
            pw,
        )


@njit(parallel=True, cache=True)
def _max_pool_2x2_kernel(x, y, idx):
    """kernel 2, stride 2, padding 0 (SegNet's and VGG's pool), unrolled. Windows cut off by
    the bottom/right edge (odd sizes in ceil mode) keep only their positions inside x."""
    n_, c_, height, width = x.shape
    ho, wo = y.shape[2], y.shape[3]
    full_w = min(wo, width // 2)  # windows with both columns inside
    for row in prange(n_ * c_ * ho):
        plane = row // ho
        n, c, oy = plane // c_, plane % c_, row % ho
        iy = 2 * oy
        if iy + 1 < height:
            for ox in range(full_w):
                a = x[n, c, iy, 2 * ox]
                b = x[n, c, iy, 2 * ox + 1]
                d = x[n, c, iy + 1, 2 * ox]
                e = x[n, c, iy + 1, 2 * ox + 1]
                best, k = a, 0
                if b > best or (b != b and best == best):
                    best, k = b, 1
                if d > best or (d != d and best == best):
                    best, k = d, 2
                if e > best or (e != e and best == best):
                    best, k = e, 3
                y[n, c, oy, ox] = best
                idx[n, c, oy, ox] = k
            for ox in range(full_w, wo):  # the last column sticks out: only kx = 0 exists
                a = x[n, c, iy, 2 * ox]
                d = x[n, c, iy + 1, 2 * ox]
                if d > a or (d != d and a == a):
                    y[n, c, oy, ox], idx[n, c, oy, ox] = d, 2
                else:
                    y[n, c, oy, ox], idx[n, c, oy, ox] = a, 0
        else:  # the last row sticks out: only ky = 0 exists
            for ox in range(wo):
                a = x[n, c, iy, 2 * ox]
                best, k = a, 0
                if 2 * ox + 1 < width:
                    b = x[n, c, iy, 2 * ox + 1]
                    if b > a or (b != b and a == a):
                        best, k = b, 1
                y[n, c, oy, ox] = best
                idx[n, c, oy, ox] = k


def max_pool2d_forward_numba(x, kernel, stride, padding, out_size):
    """Numba: one output row per prange iteration; the 2x2/stride-2/no-padding case unrolled."""
    n_, c_ = x.shape[:2]
    y = np.empty((n_, c_) + tuple(out_size), x.dtype)
    idx = np.empty((n_, c_) + tuple(out_size), switch_dtype(kernel))
    if tuple(kernel) == (2, 2) and tuple(stride) == (2, 2) and tuple(padding) == (0, 0):
        _max_pool_2x2_kernel(x, y, idx)
    else:
        _max_pool_kernel(x, y, idx, *kernel, *stride, *padding)
    return y, idx


@njit(inline="never", cache=True)
def _place_row(dy_plane, idx_plane, dx_row, iy, oy_lo, oy_hi, kw, sh, sw, ph, pw, zero):
    """dx_row = row iy of dx: the sum over the window rows oy_lo..oy_hi covering it, and over
    their columns, of dy where the switch is the pixel (iy, ox*sW - pW + kx)."""
    width, wo = dx_row.shape[0], dy_plane.shape[1]
    for ix in range(width):
        dx_row[ix] = zero
    for oy in range(oy_lo, oy_hi + 1):
        ky = iy + ph - oy * sh
        for kx in range(kw):
            ox_lo = max(0, -((kx - pw) // sw))  # windows whose column kx is inside x
            ox_hi = min(wo - 1, (width - 1 + pw - kx) // sw)
            k = ky * kw + kx
            for ox in range(ox_lo, ox_hi + 1):
                dx_row[ox * sw - pw + kx] += dy_plane[oy, ox] if idx_plane[oy, ox] == k else zero


@njit(parallel=True, cache=True)
def _place_at_switches_kernel(dy, idx, dx, kh, kw, sh, sw, ph, pw):
    """General geometry (overlapping windows too): one prange iteration per row (n, c, iy) of
    dx, which it alone builds from the window rows covering it
    oy in [ceil((iy + pH - kH + 1) / sH), floor((iy + pH) / sH)]."""
    n_, c_, ho, wo = dy.shape
    height, width = dx.shape[2], dx.shape[3]
    dy_planes = dy.reshape(n_ * c_, ho, wo)
    idx_planes = idx.reshape(n_ * c_, ho, wo)
    dx_planes = dx.reshape(n_ * c_, height, width)
    zero = dx.dtype.type(0)
    for row in prange(n_ * c_ * height):
        plane, iy = row // height, row % height
        oy_lo = max(0, -((kh - 1 - iy - ph) // sh))  # ceil((iy + ph - kh + 1) / sh)
        oy_hi = min(ho - 1, (iy + ph) // sh)
        _place_row(
            dy_planes[plane],
            idx_planes[plane],
            dx_planes[plane, iy],
            iy,
            oy_lo,
            oy_hi,
            kw,
            sh,
            sw,
            ph,
            pw,
            zero,
        )


@njit(parallel=True, cache=True)
def _place_at_switches_tiled_kernel(dy, idx, dx, kh, kw, sh, sw, ph, pw):
    """The same map when windows tile the plane (kernel == stride): each input pixel lies in at
    most one window, so each window writes its own block of dx (every pixel written once)."""
    n_, c_, ho, wo = dy.shape
    height, width = dx.shape[2], dx.shape[3]
    for row in prange(n_ * c_ * height):
        plane = row // height
        n, c, iy = plane // c_, plane % c_, row % height
        oy = (iy + ph) // sh
        ky = iy + ph - oy * sh
        if oy >= ho:  # below the last window (floor mode leaves rows out)
            for ix in range(width):
                dx[n, c, iy, ix] = 0
            continue
        covered = min(width, wo * sw - pw)
        if kw == 2 and pw == 0:
            for ox in range(covered // 2):
                k = idx[n, c, oy, ox] - ky * 2
                g = dy[n, c, oy, ox]
                dx[n, c, iy, 2 * ox] = g if k == 0 else 0
                dx[n, c, iy, 2 * ox + 1] = g if k == 1 else 0
            if covered % 2 == 1:
                ox = covered // 2
                dx[n, c, iy, 2 * ox] = dy[n, c, oy, ox] if idx[n, c, oy, ox] == ky * 2 else 0
        else:
            for ix in range(covered):
                ox = (ix + pw) // sw
                kx = ix + pw - ox * sw
                g = dy[n, c, oy, ox]
                dx[n, c, iy, ix] = g if idx[n, c, oy, ox] == ky * kw + kx else 0
        for ix in range(covered, width):
            dx[n, c, iy, ix] = 0


def max_pool2d_backward_numba(dy, idx, in_size, kernel, stride, padding):
    """Numba gather, one input row per prange iteration (block writes when windows tile)."""
    n_, c_ = dy.shape[:2]
    dx = np.empty((n_, c_) + tuple(in_size), dy.dtype)
    if tuple(kernel) == tuple(stride):
        _place_at_switches_tiled_kernel(dy, idx, dx, *kernel, *stride, *padding)
    else:
        _place_at_switches_kernel(dy, idx, dx, *kernel, *stride, *padding)
    return dx


# ----------------------------------------------------------------------------- Function
# Every host implementation of each kernel, by backend: the table a reader (and grep) reads;
# the CUDA wrappers of the same names live in cuda/pooling.py.
_KERNELS = {
    "max_pool2d_forward": {"numpy": max_pool2d_forward_ref, "numba": max_pool2d_forward_numba},
    "max_pool2d_backward": {"numpy": max_pool2d_backward_ref, "numba": max_pool2d_backward_numba},
}


def _impl(op: str):
    """The backend's implementation of ``max_pool2d_forward`` or ``max_pool2d_backward``."""
    return backend.pick(op, **_KERNELS[op], cuda=backend.lazy("minisegnet.cuda.pooling", op))


class MaxPool2d(Function):
    """y, idx = max_pool2d(x); dx = place dy at the switches (see the module docstring)."""

    differentiable_outputs = 1  # the switches carry no gradient

    def forward(self, x, kernel, stride, padding, out_size):
        xp = array_module(x)
        y, idx = _impl("max_pool2d_forward")(
            xp.ascontiguousarray(x), kernel, stride, padding, out_size
        )
        self.save(
            idx=idx, in_size=tuple(x.shape[2:]), kernel=kernel, stride=stride, padding=padding
        )
        return y, idx

    def backward(self, dy):
        s = self.saved
        dy = array_module(dy).ascontiguousarray(dy)
        return _impl("max_pool2d_backward")(dy, s.idx, s.in_size, s.kernel, s.stride, s.padding)


# ----------------------------------------------------------------------------- PoolIndices
# What ``max_pool2d(..., return_indices=True)`` hands out: the Function's switches packaged with
# their geometry, and the conversions to and from PyTorch's flat indices.
class PoolIndices(ArrayHolder):
    """Max-pooling switches plus the geometry they were recorded with.

    ``data``: (N, C, Ho, Wo) array of window positions ``ky*kW + kx`` (uint8 up to 16x16
    windows); ``kernel``, ``stride``, ``padding``: (h, w) pairs; ``in_size``: (H, W) of the
    pooled input. ``to_flat()`` gives PyTorch's int64 ``iy*W + ix`` indices. ``shape``,
    ``dtype``, ``ndim``, ``xp``, ``device`` and ``numpy()`` are the array's (as for a Tensor).
    """

    def __init__(self, data, kernel, stride, padding, in_size):
        self.data = data
        self.kernel = tuple(int(k) for k in kernel)
        self.stride = tuple(int(s) for s in stride)
        self.padding = tuple(int(p) for p in padding)
        self.in_size = tuple(int(s) for s in in_size)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def geometry(self) -> dict:
        return {"kernel": self.kernel, "stride": self.stride, "padding": self.padding}

    def to_flat(self) -> Tensor:
        return to_flat_indices(self)

    def __repr__(self) -> str:
        return (
            f"PoolIndices(shape={self.shape}, dtype={self.dtype}, kernel={self.kernel}, "
            f"stride={self.stride}, padding={self.padding}, in_size={self.in_size})"
        )


def to_flat_indices(indices: PoolIndices) -> Tensor:
    """PyTorch's convention: int64 ``iy*W + ix`` inside each (n, c) input plane."""
    if not isinstance(indices, PoolIndices):
        raise TypeError(
            f"to_flat_indices: indices must be a PoolIndices, got {type(indices).__name__}"
        )
    xp = indices.xp
    kw = indices.kernel[1]
    rows, cols = _window_origins(xp, indices.shape[2:], indices.stride, indices.padding)
    switch = indices.data.astype(np.int64)
    iy = rows + switch // kw  # (N, C, Ho, Wo)
    ix = cols + switch % kw
    return Tensor.from_array(iy * indices.in_size[1] + ix)


def from_flat_indices(
    flat, kernel_size, stride=None, padding=0, input_size=None, *, op: str = "from_flat_indices"
) -> PoolIndices:
    """PyTorch-style flat indices ``iy*W + ix`` (N, C, Ho, Wo) -> :class:`PoolIndices`.

    ``input_size``: (H, W) of the pooled input (required: the flat index needs W). Raises
    ValueError if an index does not lie inside its own window and inside the input; ``op`` is
    the name the errors carry (the caller's, when max_unpool2d converts its argument).
    """
    kernel, stride, padding = pool_geometry(op, kernel_size, stride, padding)
    flat = flat.data if isinstance(flat, (Tensor, PoolIndices)) else flat
    xp = array_module(flat)
    flat = xp.asarray(flat)
    if flat.ndim != 4 or flat.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: flat must be a 4-D integer array (N, C, Ho, Wo), got shape "
            f"{tuple(flat.shape)} dtype {flat.dtype}"
        )
    if input_size is None:
        raise ValueError(f"{op}: input_size (H, W) of the pooled input is required")
    height, width = pair(op, "input_size", tuple(input_size)[-2:], minimum=1)
    rows, cols = _window_origins(xp, flat.shape[2:], stride, padding)
    flat = flat.astype(np.int64)
    iy, ix = flat // width, flat % width
    ky, kx = iy - rows, ix - cols
    ok = (flat >= 0) & (iy < height) & (ky >= 0) & (ky < kernel[0]) & (kx >= 0) & (kx < kernel[1])
    if not bool(ok.all()):
        where = tuple(int(v[0]) for v in xp.nonzero(~ok))
        raise ValueError(
            f"{op}: index {int(flat[where])} at position {where} does not lie inside its "
            f"{kernel} window of an input of size {(height, width)} (stride {stride}, "
            f"padding {padding})"
        )
    data = (ky * kernel[1] + kx).astype(switch_dtype(kernel))
    return PoolIndices(data, kernel, stride, padding, (height, width))
