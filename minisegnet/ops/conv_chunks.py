"""What convolution's engines share: the memory budget of a chunk, the scratch memory kept from
call to call, the chunk planner, and the Numba im2col/col2im of one chunk.

The engines (``ops/conv_engine.py``'s bands, ``ops/conv_row_shift.py``, ``ops/conv_winograd.py``)
never build the columns of a whole batch: they walk it in *chunks* whose buffers stay under
``CHUNK_BYTES`` -- several small images at once, or a band of output rows of one large image --
so peak memory does not grow with the batch. This file is their bottom floor: it imports only
NumPy and Numba, and the engines and ``ops/conv.py`` import it, never the other way round.

The two kernels work on one chunk: output rows oy0 .. oy0+R-1 of images n0 .. n0+B-1, with the
chunk's columns laid out as cols (C*kh*kw, B, R, Wo). Flattened, that is the matrix
(C*kh*kw, B*R*Wo) whose product with the weights gives the chunk's outputs in one GEMM. The
readable versions they must agree with are ``im2col_ref`` and ``col2im_ref`` in ``ops/conv.py``.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import numpy as np
from numba import njit, prange

__all__ = [
    "CHUNK_BYTES", "chunk_bytes", "POINTWISE_FAST_PATH", "is_pointwise", "plan_chunks",
    "scratch_memory", "release_scratch", "kernel_args", "im2col_chunk_numba",
    "col2im_chunk_numba",
]  # fmt: skip

CHUNK_BYTES = 16 * 2**20
"""Budget for one chunk's buffers (bytes). Change with ``with chunk_bytes(n):``."""

POINTWISE_FAST_PATH = True
"""Use the im2col-free path for 1x1 / stride 1 / no padding convolutions (tests switch it off)."""


@contextmanager
def chunk_bytes(n: int):
    """Temporarily set the chunk budget: ``with chunk_bytes(1): ...`` forces one output row per
    chunk (tests use it to check chunking changes nothing)."""
    global CHUNK_BYTES
    previous = CHUNK_BYTES
    CHUNK_BYTES = int(n)
    try:
        yield
    finally:
        CHUNK_BYTES = previous


def is_pointwise(kernel, stride, padding) -> bool:
    """A 1x1 convolution with stride 1 and no padding: its input is its own column matrix."""
    return (
        POINTWISE_FAST_PATH
        and tuple(kernel) == (1, 1)
        and tuple(stride) == (1, 1)
        and tuple(padding) == (0, 0)
    )


def plan_chunks(n, rows, row_bytes, budget, extra=0, group_images=True):
    """Chunks (n0, B, r0, R) covering ``rows`` rows of each of ``n`` images, where a chunk of B
    images and R rows needs B * (R + extra) * row_bytes of memory.

    Whole images, B per chunk, when one image fits the budget (and ``group_images``); else one
    image at a time in bands of R rows sized to the budget. Chunks are of equal size (7 images,
    budget 4 -> 4, 3), so the last one is not a sliver.
    """
    image = (rows + extra) * row_bytes
    if group_images and image <= budget:
        step = max(1, min(n, budget // max(1, image)))
        step = math.ceil(n / math.ceil(n / step))
        return [(n0, min(step, n - n0), 0, rows) for n0 in range(0, n, step)]
    band = min(rows, max(1, budget // max(1, row_bytes) - extra))
    band = math.ceil(rows / math.ceil(rows / band))
    return [(n0, 1, r0, min(band, rows - r0)) for n0 in range(n) for r0 in range(0, rows, band)]


_scratch = threading.local()


def scratch_memory(nbytes: int) -> np.ndarray:
    """At least ``nbytes`` of this thread's chunk memory (uint8), grown when too small and kept
    for the next call: allocating and page-faulting tens of MB at every layer would cost a few
    ms each time. One convolution product uses it at a time."""
    memory = getattr(_scratch, "memory", None)
    if memory is None or memory.nbytes < nbytes:
        memory = _scratch.memory = np.empty(nbytes, dtype=np.uint8)
    return memory


def release_scratch() -> None:
    """Free this thread's cached chunk memory (it is otherwise kept for the next call)."""
    _scratch.memory = None


def kernel_args(kernel, stride, padding, dilation):
    """The kernels' geometry arguments: kh, kw, sh, sw, ph, pw, dh, dw."""
    return (*kernel, *stride, *padding, *dilation)


# Indexing uses flat views and unsigned loop counters on purpose: with a signed index Numba must
# handle Python's negative indices (x[-1]) on every access, which stops LLVM from vectorising the
# copy loops (about 3x slower here).


@njit(cache=True)
def _inside(offset, step, size, n_out):
    """Output range [lo, hi) of o in [0, n_out) whose source o*step + offset lies in [0, size)."""
    lo = 0
    if offset < 0:
        lo = min(n_out, (-offset + step - 1) // step)
    hi = max(lo, min(n_out, (size - offset + step - 1) // step))
    return lo, hi


@njit(cache=True, inline="always")
def copy_row(xf, cf, src, dst, lo, hi, n_out, step):
    """One row of columns: cf[dst + o] = xf[src + (o - lo)*step] for o in [lo, hi), zero for the
    other o < n_out (those read padding). Shared by the im2col kernels (here and
    ``conv_row_stack``), inlined into each caller's loop (as a call it made im2col ~30% slower)."""
    for o in range(np.uint64(lo)):
        cf[dst + o] = 0
    d = dst + np.uint64(lo)
    if step == 1:  # contiguous: the copy LLVM vectorises
        for j in range(np.uint64(hi - lo)):
            cf[d + j] = xf[src + j]
    else:
        stride = np.uint64(step)
        for j in range(np.uint64(hi - lo)):
            cf[d + j] = xf[src + j * stride]
    for o in range(np.uint64(hi), np.uint64(n_out)):
        cf[dst + o] = 0


@njit(parallel=True, cache=True)
def im2col_chunk_numba(x, cols, n0, oy0, kh, kw, sh, sw, ph, pw, dh, dw):
    """Fill cols (C*kh*kw, B, R, Wo) from x (N, C, H, W): one prange iteration per cols row."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    n_rows, B, R, Wo = cols.shape
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    for row in prange(n_rows):  # row = c*kh*kw + ky*kw + kx
        c = row // (kh * kw)
        ky = (row // kw) % kh
        kx = row % kw
        lo, hi = _inside(kx * dw - pw, sw, W, Wo)  # columns ox that read inside the image
        for b in range(B):
            for r in range(R):
                iy = (oy0 + r) * sh - ph + ky * dh  # input row read by output row oy0 + r
                dst = np.uint64(((row * B + b) * R + r) * Wo)
                if iy < 0 or iy >= H:  # the whole row reads padding
                    copy_row(xf, cf, np.uint64(0), dst, Wo, Wo, Wo, sw)
                    continue
                # input column of output column ox: ox*sw - pw + kx*dw
                src = np.uint64((((n0 + b) * C + c) * H + iy) * W + lo * sw + kx * dw - pw)
                copy_row(xf, cf, src, dst, lo, hi, Wo, sw)


@njit(parallel=True, cache=True)
def col2im_chunk_numba(cols, dx, n0, oy0, kh, kw, sh, sw, ph, pw, dh, dw):
    """Add the chunk's columns cols (C*kh*kw, B, R, Wo) into dx (N, C, H, W), as a gather.

    One prange iteration per destination row (n, c, h) that the chunk reaches. It visits the
    taps (ky, kx) whose window row lands on h, i.e. (h + ph - ky*dh) % sh == 0 with the output
    row oy = (h + ph - ky*dh) // sh inside the chunk, and for each adds the matching output
    columns; every pixel of the row is written by this iteration only (no race, no atomics).
    """
    n_rows, B, R, Wo = cols.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    cf = cols.reshape(-1)
    xf = dx.reshape(-1)
    h_lo = max(0, oy0 * sh - ph)  # input rows read by output rows oy0 .. oy0+R-1
    h_hi = min(H, (oy0 + R - 1) * sh - ph + (kh - 1) * dh + 1)
    nh = max(0, h_hi - h_lo)
    for i in prange(B * C * nh):
        b = i // (C * nh)
        c = (i // nh) % C
        h = h_lo + i % nh
        for ky in range(kh):
            t = h + ph - ky * dh
            if t < 0 or t % sh != 0:
                continue
            oy = t // sh
            if oy < oy0 or oy >= oy0 + R:
                continue
            for kx in range(kw):
                # pixel w gets output column ox when w = ox*sw - pw + kx*dw (ox whole, in range)
                lo, hi = _inside(kx * dw - pw, sw, W, Wo)
                src = np.uint64(((((c * kh + ky) * kw + kx) * B + b) * R + oy - oy0) * Wo + lo)
                dst = np.uint64((((n0 + b) * C + c) * H + h) * W + lo * sw + kx * dw - pw)
                if sw == 1:
                    for j in range(np.uint64(hi - lo)):
                        xf[dst + j] += cf[src + j]
                else:
                    step = np.uint64(sw)
                    for j in range(np.uint64(hi - lo)):
                        xf[dst + j * step] += cf[src + j]
