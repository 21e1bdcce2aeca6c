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

The arguments are checked once, by ``functional.max_unpool2d`` (``geometry.check_max_unpool2d``,
``check_pool_indices`` and ``check_switches``: the kernels index with the switches unchecked);
the Function trusts them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet import backend
from minisegnet.arrays import array_module
from minisegnet.autograd import Function
from minisegnet.ops.geometry import unpool_output_size
from minisegnet.ops.pooling import max_pool2d_backward_numba, max_pool2d_backward_ref

__all__ = [
    "unpool_output_size", "max_unpool2d_forward_ref", "max_unpool2d_backward_ref",
    "max_unpool2d_forward_numba", "max_unpool2d_backward_numba", "MaxUnpool2d",
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
