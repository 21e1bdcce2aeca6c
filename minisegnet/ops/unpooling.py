"""Max unpooling: put every pooled value back where its maximum came from, zeros elsewhere.

SegNet's and DeconvNet's decoders upsample with the switches of the matching encoder pool,
instead of learning an upsampling: the result is a sparse map that keeps *where* each feature
was strongest.

    y[n, c, iy, ix] = sum of x[n, c, oy, ox] over the windows (oy, ox) whose switch is (iy, ix)
                      (0 where no switch points)

with the window geometry of max pooling: the switch ``k = ky*kW + kx`` of window (oy, ox) is the
pixel (oy*sH - pH + ky, ox*sW - pW + kx). ``idx`` comes from ``max_pool2d(...,
return_indices=True)`` as a :class:`~minisegnet.ops.pooling.PoolIndices`, which remembers
kernel, stride, padding and the pooled input's size; PyTorch-style flat int64 indices
(``iy*W + ix``) are accepted too and converted.

Shapes:  x (N, C, Hp, Wp), idx (N, C, Hp, Wp) -> y (N, C, H, W)
    default H = (Hp - 1)*sH - 2*pH + kH (the same for W), as in PyTorch. An odd size needs
    ``output_size``: 45 rows pool (ceil mode) to 23, and 23 unpool to 46 by default, so SegNet
    passes the encoder's size (45) back. ``output_size`` must be a size that pools to Hp with
    this geometry (in floor or ceil mode), and at least the size the switches were recorded on.

Collisions. When windows overlap (stride < kernel, e.g. 3x3 stride 2) two windows can choose the
same pixel. This module defines unpooling as the *sum* of the values sent to a pixel (above).
That makes unpooling exactly the adjoint (transpose) of "read the value at each switch", so its
backward below is that read, and max pooling's backward is this very same map applied to dy:
both share one implementation (``pooling.max_pool2d_backward_*``), computed as a gather (each
output pixel sums what points at it), race-free for every geometry. A CUDA forward written as a
scatter (one thread per pooled value writing y at its switch) is race-free only when windows do
not overlap (kernel <= stride, as in SegNet's 2x2/2); with overlap it needs atomicAdd to give
the sum. PyTorch overwrites instead (one of the colliding values survives; on the GPU which one
is unspecified); for non-overlapping windows both definitions agree.

Backward (a gather, one pooled value at a time):

    dx[n, c, oy, ox] = dy[n, c, oy*sH - pH + k // kW, ox*sW - pW + k % kW],  k = idx[n, c, oy, ox]

Worked example (kernel 2, stride 2): x = [[5, 2]], idx = [[1, 0]] -> y = [[0, 5, 2, 0],
                                                                         [0, 0, 0, 0]]
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet import backend
from minisegnet.arrays import array_module, is_device_array, like_backend
from minisegnet.autograd import Function
from minisegnet.ops.geometry import switch_dtype, unpool_output_size
from minisegnet.ops.pooling import (
    PoolIndices,
    check_nchw,
    from_flat_indices,
    max_pool2d_backward_numba,
    max_pool2d_backward_ref,
    pool_geometry,
)
from minisegnet.tensor import Tensor

__all__ = [
    "max_unpool2d", "unpool_output_size", "check_switches", "max_unpool2d_forward_ref",
    "max_unpool2d_backward_ref", "max_unpool2d_forward_numba", "max_unpool2d_backward_numba",
    "MaxUnpool2d",
]  # fmt: skip


# ----------------------------------------------------------------------------- NumPy reference
def max_unpool2d_forward_ref(x, idx, out_size, kernel, stride, padding):
    """Reference: place x at the switches, summing collisions. This is max pooling's backward
    with x in the role of dy (see the module docstring), so it *is* that function.

    x (N, C, Hp, Wp), idx (N, C, Hp, Wp) -> y (N, C, H, W), (H, W) = out_size
    """
    return max_pool2d_backward_ref(x, idx, out_size, kernel, stride, padding)


def max_unpool2d_backward_ref(dy, idx, kernel, stride, padding):
    """Reference: read dy at every switch.
    dy (N, C, H, W), idx (N, C, Hp, Wp) -> dx (N, C, Hp, Wp)"""
    n_, c_, hp, wp = idx.shape
    kw, (sh, sw), (ph, pw) = kernel[1], stride, padding
    k = idx.astype(np.int64)
    iy = np.arange(hp)[:, None] * sh - ph + k // kw  # (N, C, Hp, Wp) rows of the switches
    ix = np.arange(wp)[None, :] * sw - pw + k % kw  # (N, C, Hp, Wp) columns
    n = np.arange(n_)[:, None, None, None]
    c = np.arange(c_)[None, :, None, None]
    return dy[n, c, iy, ix]


# ----------------------------------------------------------------------------- Numba kernels
def max_unpool2d_forward_numba(x, idx, out_size, kernel, stride, padding):
    """Numba: max pooling's backward kernel (a gather per output row; block writes when the
    windows tile the plane, SegNet's 2x2/2 case)."""
    return max_pool2d_backward_numba(x, idx, out_size, kernel, stride, padding)


@njit(parallel=True, cache=True)
def _read_at_switches_kernel(dy, idx, dx, switch_row, switch_col, sh, sw, ph, pw):
    """dx[n, c, oy, ox] = dy[n, c, oy*sH - pH + switch_row[k], ox*sW - pW + switch_col[k]] with
    k = idx[n, c, oy, ox]; the tables hold k // kW and k % kW (no division per element)."""
    n_, c_, hp, wp = idx.shape
    height, width = dy.shape[2], dy.shape[3]
    dy_planes = dy.reshape(n_ * c_, height, width)
    idx_planes = idx.reshape(n_ * c_, hp, wp)
    dx_planes = dx.reshape(n_ * c_, hp, wp)
    for row in prange(n_ * c_ * hp):  # one pooled row (plane, oy) per iteration
        plane, oy = row // hp, row % hp
        y0 = oy * sh - ph
        dy_plane, idx_row, dx_row = dy_planes[plane], idx_planes[plane, oy], dx_planes[plane, oy]
        for ox in range(wp):
            k = idx_row[ox]
            dx_row[ox] = dy_plane[y0 + switch_row[k], ox * sw - pw + switch_col[k]]


def max_unpool2d_backward_numba(dy, idx, kernel, stride, padding):
    """Numba: one pooled row per prange iteration, each value read from dy at its switch."""
    dx = np.empty(idx.shape, dy.dtype)
    k = np.arange(kernel[0] * kernel[1])
    _read_at_switches_kernel(dy, idx, dx, k // kernel[1], k % kernel[1], *stride, *padding)
    return dx


# ----------------------------------------------------------------------------- Function
# Every host implementation of each kernel, by backend: the table a reader (and grep) reads;
# the CUDA wrappers of the same names live in cuda/pooling.py.
_KERNELS = {
    "max_unpool2d_forward": {
        "numpy": max_unpool2d_forward_ref,
        "numba": max_unpool2d_forward_numba,
    },
    "max_unpool2d_backward": {
        "numpy": max_unpool2d_backward_ref,
        "numba": max_unpool2d_backward_numba,
    },
}


def _impl(op: str):
    return backend.pick(op, **_KERNELS[op], cuda=backend.lazy("minisegnet.cuda.pooling", op))


class MaxUnpool2d(Function):
    """y = place x at the switches idx; dx = dy read at the switches."""

    def forward(self, x, idx, out_size, kernel, stride, padding):
        xp = array_module(x)
        x, idx = xp.ascontiguousarray(x), xp.ascontiguousarray(idx)
        self.save(idx=idx, kernel=kernel, stride=stride, padding=padding)
        return _impl("max_unpool2d_forward")(x, idx, out_size, kernel, stride, padding)

    def backward(self, dy):
        s = self.saved
        dy = array_module(dy).ascontiguousarray(dy)
        return _impl("max_unpool2d_backward")(dy, s.idx, s.kernel, s.stride, s.padding)


def check_switches(op: str, switches, kernel, stride, padding, out_size) -> None:
    """Every switch must be a position ``k = ky*kW + kx`` of its window (0 <= k < kH*kW, in the
    switch dtype of this kernel) whose pixel lies inside the (H, W) = ``out_size`` plane: the
    kernels index with the switches unchecked, so one out of range would make them read or write
    outside their arrays. Switches from ``max_pool2d`` always pass; hand-made or edited ones
    may not.

    Cost: one min/max pass over the switches, then a per-switch check only for the windows
    that overhang the padding or the plane's edge (the first and last few rows and columns)."""
    expected = switch_dtype(kernel)
    if switches.dtype != expected:
        raise TypeError(
            f"{op}: indices must hold {expected} switches (window positions ky*kW + kx for "
            f"kernel {kernel}, as max_pool2d returns them), got dtype {switches.dtype}"
        )
    if switches.size == 0:
        return
    xp = array_module(switches)
    (kh, kw), positions = kernel, kernel[0] * kernel[1]
    low = int(switches.min()) if switches.dtype.kind == "i" else 0
    high = int(switches.max())
    if low < 0 or high >= positions:
        bad = low if low < 0 else high
        where = tuple(int(v[0]) for v in xp.nonzero(switches == bad))
        raise ValueError(
            f"{op}: indices hold the switch {bad} at position {where}, but a {kh}x{kw} window "
            f"has positions 0 <= k < {positions}"
        )
    pooled = switches.shape[2:]
    for axis, name in ((0, "row"), (1, "column")):
        origin = xp.arange(pooled[axis]) * stride[axis] - padding[axis]  # first pixel per window
        overhang = xp.nonzero((origin < 0) | (origin + kernel[axis] > out_size[axis]))[0]
        if overhang.size == 0:
            continue
        edge = xp.take(switches, overhang, axis=2 + axis).astype(np.int64)
        offset = edge // kw if axis == 0 else edge % kw  # ky or kx
        shape = (-1, 1) if axis == 0 else (1, -1)
        pixel = origin[overhang].reshape(shape) + offset
        outside = (pixel < 0) | (pixel >= out_size[axis])
        if bool(outside.any()):
            where = [int(v[0]) for v in xp.nonzero(outside)]
            at = int(pixel[tuple(where)])
            where[2 + axis] = int(overhang[where[2 + axis]])
            raise ValueError(
                f"{op}: indices hold the switch {int(switches[tuple(where)])} at position "
                f"{tuple(where)}, which points at {name} {at}, outside the output's {name}s "
                f"0..{out_size[axis] - 1} (kernel {kernel}, stride {stride}, padding {padding})"
            )


def max_unpool2d(input: Tensor, indices, kernel_size, stride=None, padding=0, output_size=None):
    """``torch.nn.functional.max_unpool2d``: ``indices`` a PoolIndices from ``max_pool2d`` (or
    PyTorch-style flat int64 indices); see the module docstring."""
    op = "max_unpool2d"
    check_nchw(op, "input", input)
    kernel, stride, padding = pool_geometry(op, kernel_size, stride, padding)
    pooled_size = input.shape[2:]
    if output_size is not None and len(tuple(output_size)) == 4:
        if tuple(output_size)[:2] != input.shape[:2]:
            raise ValueError(
                f"{op}: output_size {tuple(output_size)} must have the input's (N, C) = "
                f"{input.shape[:2]}"
            )
    out_size = unpool_output_size(op, pooled_size, kernel, stride, padding, output_size)

    if not isinstance(indices, PoolIndices):
        raw = indices.data if isinstance(indices, Tensor) else indices
        if not hasattr(raw, "dtype") or raw.dtype.kind not in "iu":
            raise TypeError(
                f"{op}: indices must be the PoolIndices returned by max_pool2d(..., "
                f"return_indices=True) (or flat integer indices), got {type(indices).__name__}"
            )
        indices = from_flat_indices(raw, kernel, stride, padding, input_size=out_size, op=op)
    if not (isinstance(indices.data, np.ndarray) or is_device_array(indices.data)):
        raise TypeError(
            f"{op}: indices.data must be an array of switches, got {type(indices.data).__name__}"
        )
    if indices.shape != input.shape:
        raise ValueError(
            f"{op}: indices must have the input's shape {input.shape}, got {indices.shape}"
        )
    if (indices.kernel, indices.stride, indices.padding) != (kernel, stride, padding):
        raise ValueError(
            f"{op}: indices were recorded by a pool with kernel {indices.kernel}, stride "
            f"{indices.stride}, padding {indices.padding}, but unpooling was asked for kernel "
            f"{kernel}, stride {stride}, padding {padding}"
        )
    # The furthest a switch can point: the last window's end, or the recorded input's edge.
    reach = tuple(
        min(size, (p - 1) * st - pad + k)
        for size, p, k, st, pad in zip(indices.in_size, pooled_size, kernel, stride, padding)
    )
    if out_size[0] < reach[0] or out_size[1] < reach[1]:
        raise ValueError(
            f"{op}: output size {out_size} is too small for these indices: they were recorded on "
            f"an input of size {indices.in_size} and can point at rows/columns up to "
            f"{(reach[0] - 1, reach[1] - 1)}; pass output_size={indices.in_size}"
        )
    switches = like_backend(indices.data, op, "indices")  # non-differentiable: moved, once
    check_switches(op, switches, kernel, stride, padding, out_size)
    return MaxUnpool2d.apply(
        input, switches, out_size=out_size, kernel=kernel, stride=stride, padding=padding
    )
