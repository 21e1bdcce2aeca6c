"""Convolution by implicit GEMM (``kernels/implicit_gemm.cu``): the im2col gather done while the
tiles of the matrix product are loaded into shared memory, so the column matrix never exists.

The readable reference and the fallback is im2col + cuBLAS (``minisegnet/cuda/conv.py`` inside
``ops/conv.py``'s image-chunk driver); ``ops.conv.CUDA_IMPLICIT_GEMM`` chooses between them.

    conv2d_forward(x, w, bias, stride, padding, dilation, groups) -> y
        x (N, C, H, W), w (O, C/G, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo)
        one launch of ``conv_igemm_forward<T>``, the bias added as the tile is stored
    conv2d_data_grad(dy, w, in_size, stride, padding, dilation, groups) -> dx (N, C, H, W)
        one launch of ``conv_igemm_data_grad<T>`` (col2im(w^T @ dy) as a gather-GEMM), split
        by stride phase so that a stride-2 4x4 kernel multiplies its 4 live taps, not all 16
    conv2d_weight_grad(x, dy, kernel, stride, padding, dilation, groups) -> dw (O, C/G, kh, kw)
        one launch of ``conv_igemm_weight_grad<T>`` (split-K) plus one sum over the slices

What it is meant to buy, on a GPU (the number awaits a GPU measurement: benchmarks/gpu_kernels.py
writes it into benchmarks/results/gpu.md): for the 3x3 64->64 conv of issue 15 on 8x64x128x128,
im2col wrote and the GEMM re-read 302 MB of columns per pass (0.72 ms of im2col, 0.41 ms of col2im
measured by part 1), three times per training step, and the weight gradient recomputed them.
Here each input value is read from global memory about kh*kw/4 times through the cache instead,
and every pass is one launch instead of one per image chunk plus a Python loop. It does not
use tensor cores or TF32, so against cuBLAS/cuDNN with TF32 on it can only win the memory
traffic, not the arithmetic.

Sizes: a dimension whose flat index would not fit a 32-bit int (more than 2**31 - 1 elements in
one image plane product) is refused with a ValueError; ``ops/conv.py`` then keeps the fallback.
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import array_module
from minisegnet.cuda.launch import check_array, ctype, int32, launch

__all__ = [
    "conv2d_forward",
    "conv2d_data_grad",
    "conv2d_weight_grad",
    "weight_grad_splits",
    "fits",
    "TILE_M",
    "TILE_N",
    "TILE_K",
]

SOURCE = "implicit_gemm.cu"
TILE_M, TILE_N, TILE_K = 64, 64, 16  # IG_BM, IG_BN, IG_BK in the .cu file
BLOCK = (16, 16, 1)  # 256 threads, each a 4 x 4 register tile
TARGET_BLOCKS = 264  # two blocks per SM of an H100/H200 (132 SMs): enough to fill the GPU
MIN_SLICE = 512  # weight gradient: at least this many positions per split-K slice
_INT_MAX = 2**31 - 1


def _tiles(n: int, tile: int) -> int:
    return max(1, -(-int(n) // tile))


def fits(x_shape, w_shape, out_size) -> bool:
    """Whether every flat count the kernels keep in an ``int`` fits 32 bits."""
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    ho, wo = out_size
    return max(n * ho * wo, n * h * w, c * h * w, o * ho * wo, cg * kh * kw * o) <= _INT_MAX


def _geometry_args(x_shape, w_shape, groups, stride, padding, dilation, out_size):
    n, c, h, w = x_shape
    o, _, kh, kw = w_shape
    if not fits(x_shape, w_shape, out_size):
        raise ValueError(
            f"implicit_gemm: sizes x {tuple(x_shape)}, w {tuple(w_shape)}, out {tuple(out_size)} "
            "overflow the kernels' 32-bit counters; use the im2col fallback"
        )
    return int32(n, c, h, w, o, groups, kh, kw, *stride, *padding, *dilation, *out_size)


def _check(op, a, name, b, bname):
    """Both 4-D float arrays of one dtype, made C-contiguous (a no-op when they are already)."""
    xp = array_module(a)
    a, b = xp.ascontiguousarray(a), xp.ascontiguousarray(b)
    check_array(op, name, a, ndim=4)
    check_array(op, bname, b, ndim=4)
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: {name} and {bname} must share a dtype, got {a.dtype}, {b.dtype}")
    return a, b


def conv2d_forward(x, w, bias, stride, padding, dilation, groups):
    """y (N, O, Ho, Wo) = conv2d(x, w) + bias; geometry already checked (``ops/conv.py``)."""
    x, w = _check("conv2d_forward", x, "x", w, "w")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    xp = array_module(x)
    y = xp.empty((n, o, ho, wo), x.dtype)
    if y.size == 0:
        return y
    has_bias = bias is not None
    if has_bias:
        check_array("conv2d_forward", "bias", bias, ndim=1)
    grid = (_tiles(n * ho * wo, TILE_N), _tiles(o // groups, TILE_M), groups)
    launch(
        SOURCE,
        f"conv_igemm_forward<{ctype(x.dtype)}>",
        grid,
        BLOCK,
        (
            x,
            w,
            bias if has_bias else w,  # never read when has_bias is 0
            y,
            np.int32(has_bias),
            *_geometry_args(x.shape, w.shape, groups, stride, padding, dilation, (ho, wo)),
        ),
    )
    return y


def conv2d_data_grad(dy, w, in_size, stride, padding, dilation, groups):
    """dx (N, C, H, W), (H, W) = in_size, from dy (N, O, Ho, Wo)."""
    dy, w = _check("conv2d_data_grad", dy, "dy", w, "w")
    n, o, ho, wo = dy.shape
    _, cg, kh, kw = w.shape
    h, wd = in_size
    c = cg * groups
    dx = array_module(dy).empty((n, c, h, wd), dy.dtype)
    if dx.size == 0:
        return dx
    sh, sw = stride  # one grid slice per stride phase (see the kernel)
    phase_positions = n * -(-h // sh) * -(-wd // sw)
    grid = (_tiles(phase_positions, TILE_N), _tiles(cg, TILE_M), groups * sh * sw)
    launch(
        SOURCE,
        f"conv_igemm_data_grad<{ctype(dy.dtype)}>",
        grid,
        BLOCK,
        (dy, w, dx, *_geometry_args((n, c, h, wd), w.shape, groups, stride, padding, dilation,
                                    (ho, wo))),
    )  # fmt: skip
    return dx


def weight_grad_splits(n_positions: int, blocks: int) -> tuple[int, int]:
    """(splits, slice_len) for the weight gradient's split-K: enough slices that the grid has
    about TARGET_BLOCKS blocks, each slice at least MIN_SLICE positions, a multiple of TILE_K."""
    want = max(1, -(-TARGET_BLOCKS // max(1, blocks)))
    most = max(1, n_positions // MIN_SLICE)
    splits = min(want, most)
    slice_len = -(-n_positions // splits)
    slice_len = -(-slice_len // TILE_K) * TILE_K
    splits = -(-n_positions // slice_len)
    return splits, slice_len


def conv2d_weight_grad(x, dy, kernel, stride, padding, dilation, groups):
    """dw (O, C/G, kh, kw) from x (N, C, H, W) and dy (N, O, Ho, Wo)."""
    x, dy = _check("conv2d_weight_grad", x, "x", dy, "dy")
    n, c, h, wd = x.shape
    _, o, ho, wo = dy.shape
    kh, kw = kernel
    cg = c // groups
    xp = array_module(x)
    if n * ho * wo == 0:
        return xp.zeros((o, cg, kh, kw), x.dtype)
    blocks = _tiles(cg * kh * kw, TILE_N) * _tiles(o // groups, TILE_M) * groups
    splits, slice_len = weight_grad_splits(n * ho * wo, blocks)
    part = xp.empty((splits, o, cg * kh * kw), x.dtype)
    grid = (_tiles(cg * kh * kw, TILE_N), _tiles(o // groups, TILE_M), groups * splits)
    w_shape = (o, cg, kh, kw)
    launch(
        SOURCE,
        f"conv_igemm_weight_grad<{ctype(x.dtype)}>",
        grid,
        BLOCK,
        (
            x,
            dy,
            part,
            *_geometry_args(x.shape, w_shape, groups, stride, padding, dilation, (ho, wo)),
            *int32(slice_len),
        ),
    )
    dw = part[0] if splits == 1 else part.sum(axis=0)
    return dw.reshape(o, cg, kh, kw)
