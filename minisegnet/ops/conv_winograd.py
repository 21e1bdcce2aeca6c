"""Winograd convolution F(2x2, 3x3): stride-1 3x3 convolutions with 2.25x fewer multiplications.

The idea (Lavin & Gray, 2016). One output tile of 2x2 pixels of a 3x3 convolution needs a 4x4
input tile d and costs 36 multiply-adds per (input, output) channel pair done directly. Winograd's
minimal filtering algorithm computes the same tile as

    Y = A^T [ (G g G^T) * (B^T d B) ] A            (* elementwise, on 4x4 matrices)

with 16 multiplications, because the transforms are sums and differences:

    B^T = [[1,  0, -1,  0],      G = [[  1,    0,    0],      A^T = [[1, 1,  1,  0],
           [0,  1,  1,  0],           [1/2,  1/2,  1/2],             [0, 1, -1, -1]]
           [0, -1,  1,  0],           [1/2, -1/2,  1/2],
           [0,  1,  0, -1]]           [  0,    0,    1]]

Over channels the elementwise products become 16 independent matrix products, one per position
(xi, nu) of the 4x4 transformed tile, which is where all the work is and where BLAS runs:

    U[xi nu, o, c] = (G w[o, c] G^T)[xi, nu]                     filter transform  (16, O, C)
    V[xi nu, c, p] = (B^T d[c, p] B)[xi, nu]                     input transform   (16, C, P)
    M[xi nu]       = U[xi nu] @ V[xi nu]                         16 GEMMs          (16, O, P)
    y[o, tile p]   = A^T M[:, o, p] A                            output transform  (2x2 pixels)

p runs over the tiles: (Ho/2) x (Wo/2) of each image, the last row/column of tiles cut to the
output when Ho or Wo is odd (the input tile reads zeros beyond the padded input).

Backward. Y is linear in d and in g, so both gradients are the transposed (adjoint) maps, with
the same matrices and the same 16 products; with dY the 2x2 output-gradient tiles:

    Z[xi nu, o, p] = (A dY[o, p] A^T)[xi, nu]                    (16, O, P)
    data:    Q[xi nu] = U[xi nu]^T @ Z[xi nu]  (16, C, P);  dx += B Q[:, c, p] B^T  on each
             4x4 input tile (neighbouring tiles overlap by 2 pixels: their sums add)
    weight:  S[xi nu] = sum_p Z[xi nu] @ V[xi nu]^T  (16, O, C);  dw[o, c] = G^T S[:, o, c] G

Any zero padding works (the input tiles read it as zeros; the data gradient drops what falls
into it). Dilation (d, d) goes through the same code on the d*d dilated sub-grids
(ops/conv_winograd_dilated.py), which F4's and F6's kernels read and write in place
(``_planes``). Not taken (``applies`` is False; ``ops/conv_engine.py`` uses its im2col/row-shift
path): stride != 1, unequal dilations, kernels other than 3x3, groups > 1, and
shapes where the measurements below show no gain (few channels; few pixels per channel).

Three tile sizes. This file's matrices are F(2x2, 3x3); ops/conv_winograd_f4.py has F(4x4, 3x3)
(6x6 input tiles, 36 products: 2.25 multiplications per output instead of 4, and transformed
tiles 2.25x the input instead of 4x, at about 20x the float32 error: 6.5e-6 of max |y| on 64
channels), and ops/conv_winograd_f6.py F(6x6, 3x3) (8x8 input tiles, 64 products: 1.78
multiplications per output, tiles 1.78x the input, float32 error 1.4-2x F4's). The NumPy
references below take any of them (``f=F2``, ``F4``, ``F6``), and so do the drivers, which
share the chunks, buffers and products. The numba backend picks F6 for large undilated problems
and F4 elsewhere (``VARIANT``, ``F6_MIN_PIXELS``); ``winograd(..., variant=F2)`` forces one.
What F4 bought on the benchmark case (forward + both gradients of 3x3 64->64 on 8x64x128x128,
interleaved with PyTorch, min of 7): F2 215 ms, F4 187 ms, PyTorch 163 ms; with the backward
pass's shared transform (``conv2d_grads``) and the adjoint transform by phase, F4 138 ms against
PyTorch's 228 and the im2col/row-shift path's 188 in one run of benchmarks/bench_fast_paths.py.
F6 takes 0.75-0.79x F4's time there, but only once the transforms compute in float32
(``conv_winograd_f4.K4``): with Python literals they ran in float64, and F6's rows, with more
and larger entries, then took 40% longer than F4's and the tile did not pay.

Float32 error bound. Every number is a short sum of products, so with u = 2^-24 and
gamma_k = k u / (1 - k u), the computed y satisfies, elementwise,

    |y_winograd - y| <= gamma_{C+13} * T,
    T = sum over c of  |A^T| ( (|G| |w[o,c]| |G^T|) * (|B^T| |d[c]| |B|) ) |A|

(input transform: 4 additions along each path; filter transform: 4 (the halves are exact); the
product: 1 rounding plus C - 1 additions in the channel sum; output transform: 4; so 13 plus C;
F4 counts 24 plus C, ``conv_winograd_f4.ROUNDINGS``, and F6 32 plus C). T is the Winograd
evaluation itself with every matrix and datum replaced by its absolute value: it exceeds the
direct convolution's sum of |w| |x| (the transforms add and subtract), so the bound is looser
than the direct path's; ``error_bound`` evaluates it in float64 and the tests check the float32
result against it on hypothesis-drawn shapes. F2's error itself is no worse than the direct path's (F4's is about 20x larger): 64->64
channels on 2x64x32x32 N(0, 1) data, max error 2.8e-7 of max |y| against 4.8e-7 for the im2col
float32 convolution (whose channel sums have 576 terms, not 64); benchmarks/results/fast_paths.md
states it per benchmarked case.

Speed. Where the path pays is measured in ``MIN_PIXELS_PER_CHANNEL`` and ``MIN_CHANNELS``
(and their dilated counterparts): 32 or more channels with 40 or more output pixels per channel
(64 channels for a dilated one). Elsewhere the im2col/row-shift path's larger GEMMs win.
(Measurements taken before ops/blas_threads.py restored NumPy's BLAS threads after each
Winograd call compared Winograd with a direct path that had silently lost one of its two BLAS
threads, and chose smaller thresholds; they are superseded.) On a loaded machine every thread
barrier waits for a descheduled thread, and Winograd has 36 products per chunk: sharing them
among Python threads with one join per chunk (``_products``) is what made the path usable
on the busy shared machine this was first written on. Rerun: benchmarks/bench_fast_paths.py.

Schedules. F4 and F6 run by worker (``BY_WORKER``): each worker thread takes runs of chunks and
does everything for a chunk itself -- transforms on one Numba thread, products in one GIL-free
BLAS call (ops/gemm_batch.py) -- so that the chunk's buffers stay in its core's cache and the
threads meet once per convolution; the other schedule (F2, or a data gradient of fewer images
than threads) runs each transform over all threads and shares each chunk's products. Other
filter sizes: the NumPy references and ``error_bound`` take any F(m x m, r x r) (``Variant.r``);
ops/conv_winograd_7x7.py has F(2x2, 7x7) and its own drivers.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from minisegnet.ops import blas_threads, conv_chunks, gemm_batch
from minisegnet.ops import conv_winograd_dilated as dilated
from minisegnet.ops import conv_winograd_f4 as f4
from minisegnet.ops import conv_winograd_f6 as f6
from minisegnet.ops.conv_winograd_f4 import _padded_row  # shared by every tile's kernels

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)

ENABLED = True
"""Let the numba backend take this path where it applies (tests switch it off and on)."""

MIN_CHANNELS = 32
"""Smallest input and output channel count that takes the path when undilated (measured:
``MIN_PIXELS_PER_CHANNEL``); ``DILATED_MIN_CHANNELS`` for a dilated one."""

DILATED_MIN_CHANNELS = 64
"""The same for dilated convolutions. With 32 channels Winograd on the sub-grids tied with the
row-shift path (2026-12-06, forward + both gradients through F.conv2d, dilation 2, median of 5
interleaved runs, three rounds, Winograd / row-shift: 8x32x64x64 0.96, 1.01, 1.01;
4x32x96x128 0.81, 0.91, 0.93; 4x32x40x40 0.80, 1.09, 1.05)."""

BUDGET_BYTES = None
"""Transformed tiles of one chunk (two (16, channels, tiles) buffers) stay under this many
bytes; None: ops/conv_chunks.py's CHUNK_BYTES (16 MB, and ``conv_chunks.chunk_bytes``), the
budget of the band engine's column buffers, so the path keeps the convolution's peak memory
where it was. Measured (busy
machine, load 12-14, forward + both gradients of 3x3 64->64 on 8x64x128x128, min / median of 4
interleaved runs): 16 MB 929 / 1052 ms, 32 MB 964 / 1359 ms, the im2col/row-shift path
1101 / 1262 ms. The products are shared among threads, so more, smaller chunks cost little."""


@contextmanager
def winograd(
    enabled: bool,
    min_channels: int | None = None,
    dilated: bool | None = None,
    variant: Variant | None = None,
    any_size: bool = False,
):
    """Temporarily allow or forbid the path, optionally from ``min_channels`` on (tests use 1),
    with or without the dilated sub-grids, with one variant forced (F2, F4 or F6), and
    (``any_size``) on images of any size (both pixel thresholds 0: tests use tiny ones)."""
    global ENABLED, MIN_CHANNELS, DILATED, VARIANT, MIN_PIXELS_PER_CHANNEL
    global DILATED_MIN_PIXELS_PER_CHANNEL, DILATED_MIN_CHANNELS
    previous = (
        ENABLED, MIN_CHANNELS, DILATED, VARIANT,
        MIN_PIXELS_PER_CHANNEL, DILATED_MIN_PIXELS_PER_CHANNEL, DILATED_MIN_CHANNELS,
    )  # fmt: skip
    ENABLED = bool(enabled)
    if min_channels is not None:
        MIN_CHANNELS = DILATED_MIN_CHANNELS = int(min_channels)
    if dilated is not None:
        DILATED = bool(dilated)
    if variant is not None:
        VARIANT = variant
    if any_size:
        MIN_PIXELS_PER_CHANNEL = DILATED_MIN_PIXELS_PER_CHANNEL = 0
    try:
        yield
    finally:
        (
            ENABLED, MIN_CHANNELS, DILATED, VARIANT,
            MIN_PIXELS_PER_CHANNEL, DILATED_MIN_PIXELS_PER_CHANNEL, DILATED_MIN_CHANNELS,
        ) = previous  # fmt: skip


DILATED = True
"""Take dilated 3x3 convolutions (dilation (d, d)) through the sub-grids of
ops/conv_winograd_dilated.py. On since measured faster than the default (row-shift / band) path
by benchmarks/bench_fast_paths.py on a quiet machine (2026-12-05 09:03 UTC, load 0.9, 2
threads, dilated 3x3 64->64 on 8x64x128x128, forward + both gradients; results/fast_paths.md):
355 ms through the sub-grids against 406 ms (PyTorch 223-226 ms). It was off after the first
measurement, on the busy shared machine (load ~10, the earlier version of that file): 2721 ms
through the sub-grids against 1672 ms (the sub-grid copies move about twice the input's bytes,
which a loaded machine punishes most).
``winograd(True, dilated=False)`` restores the other path."""


def applies(channels, out_channels, kernel, stride, dilation, groups, out_size=None, batch=1):
    """True where the numba backend computes the convolution with this file. With the output
    size (Ho, Wo) given, only where there are enough pixels per channel: per image
    (``MIN_PIXELS_PER_CHANNEL``) for an undilated convolution, over the batch of ``batch``
    images (``DILATED_MIN_PIXELS_PER_CHANNEL``) for a dilated one."""
    dh, dw = dilation
    undilated = dh == dw == 1
    if out_size is not None:
        pixels = out_size[0] * out_size[1] / max(channels, out_channels)
        if undilated and pixels < MIN_PIXELS_PER_CHANNEL:
            return False
        if not undilated and batch * pixels < DILATED_MIN_PIXELS_PER_CHANNEL:
            return False
    return (
        ENABLED
        and tuple(kernel) == (3, 3)
        and tuple(stride) == (1, 1)
        and (undilated or (DILATED and dh == dw))
        and groups == 1
        and min(channels, out_channels) >= (MIN_CHANNELS if undilated else DILATED_MIN_CHANNELS)
    )


class Variant(NamedTuple):
    """One algorithm F(m x m, r x r): its matrices (B^T: a x a, G: a x r, A^T: m x a,
    a = m + r - 1) and the roundings along one path of its float32 evaluation besides the
    channel sum."""

    BT: np.ndarray
    G: np.ndarray
    AT: np.ndarray
    roundings: int

    @property
    def m(self):
        """Output tile side."""
        return self.AT.shape[0]

    @property
    def a(self):
        """Input tile side; a * a products."""
        return self.BT.shape[0]

    @property
    def r(self):
        """Filter side (3; 7 for ops/conv_winograd_7x7.py's ``F2_7X7``)."""
        return self.G.shape[1]


F2 = Variant(BT, G, AT, 13)
"""F(2x2, 3x3): this file's matrices (13 roundings: module docstring)."""
F4 = Variant(f4.BT, f4.G, f4.AT, f4.ROUNDINGS)
"""F(4x4, 3x3): ops/conv_winograd_f4.py."""
F6 = Variant(f6.BT, f6.G, f6.AT, f6.ROUNDINGS)
"""F(6x6, 3x3): ops/conv_winograd_f6.py."""

VARIANT = None
"""The variant the drivers use when not told; None: the measured choice (``_variant``), F6 on
large undilated problems and F4 elsewhere (``winograd(..., variant=F2)`` forces one). F4 ran
faster than F2 on every shape that takes the path (``MIN_PIXELS_PER_CHANNEL``); F2 won only
where neither beats the im2col path (1x256x60x80: F2 1.32x PyTorch, F4 1.50x)."""

F6_MIN_PIXELS = 65536
"""From this many output pixels over the batch (N Ho Wo) an undilated convolution takes F6
instead of F4. Measured 2026-12-06 (forward + both gradients through F.conv2d, interleaved,
median of 5-9, F6 / F4): 8x64x128x128 (131k pixels) 0.75, 0.77, and 0.75-0.85 in a profile of
the drivers alone; 2x64x96x128 (24.6k) 0.97; 1x64x120x160 (19.2k) 1.08-1.12; 4x64x64x64 (16.4k)
0.93 and 1.10; 1x128x120x160 (19.2k) 0.85 and 1.20. The machine's drift made the smaller
shapes disagree between runs; only the large batch won in every run, and the threshold keeps
F6 to problems of that size. Dilated convolutions stay on F4: F6 on the sub-grids ran 1.2-1.7x
F4's time on four shapes (8x64x128x128 d2 to 1x128x120x160 d2)."""

MIN_PIXELS_PER_CHANNEL = 40
"""Below this many output pixels per image per channel (Ho Wo / max(C, O)) an undilated
convolution is not taken (``applies``). Measured 2026-12-06, once the transforms computed in
float32 (forward + both gradients through F.conv2d, median of 5 interleaved runs, three rounds,
Winograd / row-shift path, pixels per channel per image in brackets): 4x256x90x120 (42) 0.77,
0.73, 0.76; 1x256x120x160 (75) 0.76, 0.80, 0.80; 1x64x60x80 (75) 0.80, 0.75, 0.88; 2x128x60x80
(38) 0.97, 1.01, 1.01; 4x128x60x80 (38) 0.98, 0.96, 0.96; with 32 channels (``MIN_CHANNELS``)
8x32x64x64 (128) 0.85, 0.81, 0.81; 4x32x96x128 (384) 0.69, 0.70, 0.71; 4x32x40x40 (50) 0.93,
0.86, 0.79. Earlier the same day, in single rounds: 1x256x60x80 (19) 1.26, 4x64x64x64 (64)
0.72; and before the float32 transforms, 1x512x60x80 (9.4) 346 / 285 ms. The rule was 100
pixels and 64 channels while the transforms ran in float64 (``conv_winograd_f4.K4``); where the
transformed filters (36 C O) and the transforms' traffic outweigh what the fewer
multiplications save, the direct path's larger GEMMs win: few pixels per filter."""


DILATED_MIN_PIXELS_PER_CHANNEL = 200
"""Below this many output pixels per channel over the whole batch (N Ho Wo / max(C, O)) a
dilated convolution keeps the row-shift path (``applies``). Measured with the sub-grids read in
place (``_copies_subgrids``; forward + both gradients through F.conv2d, median of 5 interleaved
runs, Winograd / row-shift path, ms, the batch's pixels per channel in brackets): dilation 2:
8x64x128x128 (2048) 132 / 164; 4x64x64x64 (256) 19.3 / 22.2; 1x64x60x80 (75) 8.9 / 8.4;
1x64x32x32 (16) 7.1 / 6.0; 1x128x120x160 (150) 88 / 67; 1x256x60x80 (19) 87 / 71; dilation 4:
2x64x96x128 (384) 32.0 / 37.5; 2x64x48x64 (96) 14.2 / 12.7; 1x512x60x80 (9.4) 396 / 308
(before the transforms computed in float32, which made Winograd faster still). Two identical runs differed by up to 12% in the same measurement, so the threshold sits in the
gap between the three clear wins and the losses. The per-image rule above did not fit these:
the three wins have 16-64 pixels per channel on each sub-grid. (The dilated row-shift path's
products, K = 3 C, run slower than the undilated path's at 64 channels.)"""


def _variant(f, dilation=(1, 1), out_pixels=0, r=3):
    """f, or when None the measured choice (``VARIANT``): F6 for an undilated convolution with
    ``F6_MIN_PIXELS`` output pixels over the batch (N Ho Wo), else F4. These drivers take 3x3
    filters (7x7 ones go through ops/conv_winograd_7x7.py): f for another filter size r is a
    ValueError."""
    f = f if f is not None else VARIANT
    if f is None:
        f = F6 if tuple(dilation) == (1, 1) and out_pixels >= F6_MIN_PIXELS else F4
    if f.r != r:
        raise ValueError(
            f"f: a Winograd variant for {r}x{r} filters expected, got one for {f.r}x{f.r}"
        )
    return f


def _tiles(ho, wo, m=2):
    return -(-ho // m), -(-wo // m)


# ------------------------------------------------------------------------------------------------
# NumPy reference: each transform as a matrix product (the definitions), for either variant
# ------------------------------------------------------------------------------------------------


def filter_transform_ref(w, f=F2):
    """w (O, C, r, r) -> U (a*a, O, C), U[a xi + nu, o, c] = (G w[o, c] G^T)[xi, nu]."""
    g = f.G.astype(w.dtype)
    # = np.einsum("ai,ocij,bj->aboc", g, w, g), as two products: one einsum loop over all the
    # indices took 1.6 ms for 64x64 filters, einsum's own path search 0.2 ms per call
    t = np.tensordot(w, g, axes=([3], [1]))  # (O, C, r, a): w G^T
    u = np.tensordot(g, t, axes=([1], [2])).transpose(0, 3, 1, 2)  # (a, a, O, C): G w G^T
    return np.ascontiguousarray(u).reshape(f.a * f.a, *w.shape[:2])


def input_tiles_ref(x, padding, tiles, f=F2):
    """x (N, C, H, W) -> d (N, C, th, tw, a, a): tile (ty, tx) is the padded input at rows
    m ty .. m ty + a - 1, columns m tx .. m tx + a - 1 (zeros beyond the padded input)."""
    (ph, pw), (th, tw), m, e = padding, tiles, f.m, f.r - 1
    n, c, h, w = x.shape
    xp = np.zeros((n, c, m * th + e, m * tw + e), x.dtype)
    rows, cols = min(h, m * th + e - ph), min(w, m * tw + e - pw)
    xp[:, :, ph : ph + rows, pw : pw + cols] = x[:, :, :rows, :cols]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (f.a, f.a), axis=(2, 3))
    return windows[:, :, ::m, ::m]


def input_transform_ref(x, padding, tiles, f=F2):
    """x -> V (a*a, C, N*th*tw): V[a xi + nu, c, p] = (B^T d[c, p] B)[xi, nu]."""
    d = input_tiles_ref(x, padding, tiles, f)
    bt = f.BT.astype(x.dtype)
    v = np.einsum("ai,nctsij,bj->abcnts", bt, d, bt)
    return np.ascontiguousarray(v.reshape(f.a * f.a, x.shape[1], -1))


def output_transform_ref(m, n, out_size, f=F2):
    """M (a*a, O, N*th*tw) -> y (N, O, Ho, Wo): the m x m tiles A^T M[:, o, p] A, cut to size."""
    ho, wo = out_size
    th, tw = _tiles(ho, wo, f.m)
    at = f.AT.astype(m.dtype)
    m = m.reshape(f.a, f.a, -1, n, th, tw)
    y = np.einsum("ia,abonts,jb->notisj", at, m, at).reshape(n, -1, f.m * th, f.m * tw)
    return np.ascontiguousarray(y[:, :, :ho, :wo])


def output_transform_adjoint_ref(dy, f=F2):
    """dy (N, O, Ho, Wo) -> Z (a*a, O, N*th*tw): Z[a xi + nu, o, p] = (A dY[o, p] A^T)[xi, nu]."""
    n, o, ho, wo = dy.shape
    th, tw = _tiles(ho, wo, f.m)
    padded = np.zeros((n, o, f.m * th, f.m * tw), dy.dtype)
    padded[:, :, :ho, :wo] = dy
    tiles = padded.reshape(n, o, th, f.m, tw, f.m)
    at = f.AT.astype(dy.dtype)
    z = np.einsum("ia,notisj,jb->abonts", at, tiles, at)
    return np.ascontiguousarray(z.reshape(f.a * f.a, o, -1))


def input_transform_adjoint_ref(q, n, in_size, padding, f=F2):
    """Q (a*a, C, N*th*tw) -> dx (N, C, H, W): B Q[:, c, p] B^T added onto each a x a input tile
    (overlapping tiles add), the padding cut off."""
    (h, w), (ph, pw), m, e = in_size, padding, f.m, f.r - 1
    th, tw = _tiles(h + 2 * ph - e, w + 2 * pw - e, m)
    bt = f.BT.astype(q.dtype)
    tiles = np.einsum("ai,abcnts,bj->nctsij", bt, q.reshape(f.a, f.a, -1, n, th, tw), bt)
    xp = np.zeros((n, q.shape[1], m * th + e, m * tw + e), q.dtype)
    for i in range(f.a):
        for j in range(f.a):
            xp[:, :, i : i + m * th : m, j : j + m * tw : m] += tiles[..., i, j]
    rows, cols = min(h, m * th + e - ph), min(w, m * tw + e - pw)
    dx = np.zeros((n, q.shape[1], h, w), q.dtype)
    dx[:, :, :rows, :cols] = xp[:, :, ph : ph + rows, pw : pw + cols]
    return dx


def conv2d_ref(x, w, padding, bias=None, f=F2):
    """y = conv2d(x, w, padding) (+ bias) by Winograd F(m x m, r x r), all in NumPy."""
    n, _, h, wd = x.shape
    out = (h + 2 * padding[0] - f.r + 1, wd + 2 * padding[1] - f.r + 1)
    m = filter_transform_ref(w, f) @ input_transform_ref(x, padding, _tiles(*out, f.m), f)
    y = output_transform_ref(m, n, out, f)
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def conv2d_data_grad_ref(dy, w, in_size, padding, f=F2):
    """dx of conv2d_ref: the adjoint of each stage, in reverse order."""
    q = filter_transform_ref(w, f).transpose(0, 2, 1) @ output_transform_adjoint_ref(dy, f)
    return input_transform_adjoint_ref(q, dy.shape[0], in_size, padding, f)


def conv2d_weight_grad_ref(x, dy, padding, f=F2):
    """dw (O, C, r, r) of conv2d_ref: G^T (sum_p Z V^T) G."""
    z = output_transform_adjoint_ref(dy, f)
    v = input_transform_ref(x, padding, _tiles(*dy.shape[2:], f.m), f)
    s = (z @ v.transpose(0, 2, 1)).reshape(f.a, f.a, dy.shape[1], x.shape[1])
    g = f.G.astype(x.dtype)
    return np.einsum("ai,aboc,bj->ocij", g, s, g)


def error_bound(x, w, padding, f=F2):
    """Elementwise bound on |y_float32 - y| (module docstring): gamma_{C+roundings} * T, float64."""
    n, c, h, wd = x.shape
    out = (h + 2 * padding[0] - f.r + 1, wd + 2 * padding[1] - f.r + 1)
    ax, aw = np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64))
    absolute = Variant(np.abs(f.BT), np.abs(f.G), np.abs(f.AT), f.roundings)
    u = filter_transform_ref(aw, absolute)
    v = input_transform_ref(ax, padding, _tiles(*out, f.m), absolute)
    t = output_transform_ref(u @ v, n, out, absolute)
    k = (c + f.roundings) * 2.0**-24
    return k / (1 - k) * t


# ------------------------------------------------------------------------------------------------
# Numba kernels: the transforms, one row of tiles of one image per prange iteration
# ------------------------------------------------------------------------------------------------
# Transformed tiles live in buffers of 16 slices, slice k holding the (tiles, channels) matrix
# of product k: element [k, p, c] at k * stride + p * channels + c, with the chunk's tiles
# p = (b * TR + r) * tw + tx (image b of the chunk, tile row ty0 + r, tile column tx). Tiles as
# rows, channels as columns: the products (tiles, C) @ (C, O) ran 1.6-2x faster in OpenBLAS
# here than (O, C) @ (C, tiles), and every transform writes or reads channels contiguously.


@njit(inline="always", cache=True)
def _gather16(flat, stride, p):
    """The 16 values flat[k * stride + p], k = 0 .. 15: tile p's entries of a (16, ...) buffer."""
    return (
        flat[p], flat[stride + p], flat[2 * stride + p], flat[3 * stride + p],
        flat[4 * stride + p], flat[5 * stride + p], flat[6 * stride + p], flat[7 * stride + p],
        flat[8 * stride + p], flat[9 * stride + p], flat[10 * stride + p], flat[11 * stride + p],
        flat[12 * stride + p], flat[13 * stride + p], flat[14 * stride + p],
        flat[15 * stride + p],
    )  # fmt: skip


@njit(inline="always", cache=True)
def _row_times_b(row, j):
    """(row[j : j+4]) B: one row of the input transform's d B, for the tile starting at j."""
    return (
        row[j] - row[j + 2],
        row[j + 1] + row[j + 2],
        row[j + 2] - row[j + 1],
        row[j + 1] - row[j + 3],
    )


@njit(parallel=True, cache=True)
def _input_transform(x, v, tiles, n0, ty0, ph, pw):
    """x (N, C, H, W) -> v[k, c, p] = (B^T d B)[k // 4, k % 4] for every tile p of the chunk
    (channel-major: one (image, channel) plane per iteration, tiles contiguous)."""
    _, C, H, W = x.shape
    B, TR, tw = tiles
    xf, vf = x.reshape(-1), v.reshape(-1)
    stride = v.shape[1]
    for job in prange(C * B):
        c, b = job // B, job % B
        base = ((n0 + b) * C + c) * H * W
        rows = np.empty((4, 2 * tw + 2), x.dtype)
        r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
        for r in range(TR):
            for i in range(4):
                _padded_row(xf, base, 2 * (ty0 + r) - ph + i, H, W, pw, 1, rows[i])
            out = c * B * TR * tw + (b * TR + r) * tw
            for tx in range(tw):
                j = 2 * tx
                p = out + tx
                # rows first: t_ik = (d B)[i, k]; then columns: V = B^T t
                t00, t01, t02, t03 = _row_times_b(r0, j)
                t10, t11, t12, t13 = _row_times_b(r1, j)
                t20, t21, t22, t23 = _row_times_b(r2, j)
                t30, t31, t32, t33 = _row_times_b(r3, j)
                vf[p] = t00 - t20
                vf[1 * stride + p] = t01 - t21
                vf[2 * stride + p] = t02 - t22
                vf[3 * stride + p] = t03 - t23
                vf[4 * stride + p] = t10 + t20
                vf[5 * stride + p] = t11 + t21
                vf[6 * stride + p] = t12 + t22
                vf[7 * stride + p] = t13 + t23
                vf[8 * stride + p] = t20 - t10
                vf[9 * stride + p] = t21 - t11
                vf[10 * stride + p] = t22 - t12
                vf[11 * stride + p] = t23 - t13
                vf[12 * stride + p] = t10 - t30
                vf[13 * stride + p] = t11 - t31
                vf[14 * stride + p] = t12 - t32
                vf[15 * stride + p] = t13 - t33


@njit(parallel=True, cache=True)
def _output_transform(m, tiles, y, bias, n0, ty0):
    """m[k, p, o] -> y (N, O, Ho, Wo): the 2x2 tiles A^T M A + bias (O,)."""
    _, O, Ho, Wo = y.shape
    B, TR, tw = tiles
    mf, yf = m.reshape(-1), y.reshape(-1)
    stride = m.shape[1]
    for job in prange(B * TR):
        b, r = job // TR, job % TR
        oy = 2 * (ty0 + r)
        second_row = oy + 1 < Ho
        for tx in range(tw):
            ox = 2 * tx
            right = ox + 1 < Wo
            src = (job * tw + tx) * O
            for o in range(O):
                p = src + o
                (m00, m01, m02, m03, m10, m11, m12, m13, m20, m21, m22, m23, m30, m31, m32, m33) = (
                    _gather16(mf, stride, p)
                )  # m[xi nu] = M[4 xi + nu]
                # s = A^T M (rows), then y = s A (columns)
                s00 = m00 + m10 + m20
                s10 = m10 - m20 - m30
                s01 = m01 + m11 + m21
                s11 = m11 - m21 - m31
                s02 = m02 + m12 + m22
                s12 = m12 - m22 - m32
                s03 = m03 + m13 + m23
                s13 = m13 - m23 - m33
                row0 = (((n0 + b) * O + o) * Ho + oy) * Wo + ox
                add = bias[o]
                yf[row0] = s00 + s01 + s02 + add
                if right:
                    yf[row0 + 1] = s01 - s02 - s03 + add
                if second_row:
                    yf[row0 + Wo] = s10 + s11 + s12 + add
                    if right:
                        yf[row0 + Wo + 1] = s11 - s12 - s13 + add


@njit(inline="always", cache=True)
def _store_row_times_at(zf, stride, p, k0, u0, u1):
    """z[k0 + nu, p] = ((u0, u1) A^T)[nu], nu < 4: one row of the 4x4 tile A dY A^T."""
    zf[k0 * stride + p] = u0
    zf[(k0 + 1) * stride + p] = u0 + u1
    zf[(k0 + 2) * stride + p] = u0 - u1
    zf[(k0 + 3) * stride + p] = -u1


@njit(parallel=True, cache=True)
def _output_transform_adjoint(dy, z, tiles, n0, ty0):
    """dy (N, O, Ho, Wo) -> z[k, o, p] = (A dY A^T)[k // 4, k % 4] (dY read as 0 beyond the
    output; channel-major, as ``_input_transform``)."""
    _, O, Ho, Wo = dy.shape
    B, TR, tw = tiles
    df, zf = dy.reshape(-1), z.reshape(-1)
    stride = z.shape[1]
    zero = np.zeros(1, dy.dtype)[0]
    for job in prange(O * B):
        o, b = job // B, job % B
        for r in range(TR):
            oy = 2 * (ty0 + r)
            second_row = oy + 1 < Ho
            row0 = (((n0 + b) * O + o) * Ho + oy) * Wo
            out = o * B * TR * tw + (b * TR + r) * tw
            for tx in range(tw):
                ox = 2 * tx
                right = ox + 1 < Wo
                a00 = df[row0 + ox]
                a01 = df[row0 + ox + 1] if right else zero
                a10 = df[row0 + Wo + ox] if second_row else zero
                a11 = df[row0 + Wo + ox + 1] if second_row and right else zero
                # columns first: u_ij = (A a)[i, j] for the two columns j
                u00, u01 = a00, a01
                u10, u11 = a00 + a10, a01 + a11
                u20, u21 = a00 - a10, a01 - a11
                u30, u31 = -a10, -a11
                p = out + tx
                _store_row_times_at(zf, stride, p, 0, u00, u01)  # then rows: (A a) A^T
                _store_row_times_at(zf, stride, p, 4, u10, u11)
                _store_row_times_at(zf, stride, p, 8, u20, u21)
                _store_row_times_at(zf, stride, p, 12, u30, u31)


@njit(inline="always", cache=True)
def _times_b(v0, v1, v2, v3):
    """B (v0, v1, v2, v3): one column of B Q, and (transposed) one row of (B Q) B^T."""
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@njit(inline="always", cache=True)
def _add_row_times_bt(row, j, e0, e1, e2, e3):
    """row[j : j+4] += (e0, e1, e2, e3) B^T: one row of a 4x4 tile of the adjoint input transform
    (B Q) B^T, added onto its place in the plane (inlined: no call in the inner loop)."""
    d0, d1, d2, d3 = _times_b(e0, e1, e2, e3)
    row[j] += d0
    row[j + 1] += d1
    row[j + 2] += d2
    row[j + 3] += d3


@njit(parallel=True, cache=True)
def _input_transform_adjoint(q, tiles, dx, n0, ty0, ph, pw, parity):
    """q[k, p, c] -> dx (N, C, H, W) += B Q B^T on each 4x4 tile (padding dropped), for the
    tile rows r of the chunk with r % 2 == parity. Tile rows two apart do not overlap, so the
    iterations never write the same pixel; the driver runs parity 0, then 1."""
    _, C, H, W = dx.shape
    B, TR, tw = tiles
    qf, xf = q.reshape(-1), dx.reshape(-1)
    stride = q.shape[1]
    wp = 2 * tw + 2
    half = (TR - parity + 1) // 2
    for job in prange(B * half):
        b, r = job // half, 2 * (job % half) + parity
        plane = np.zeros((C, 4, wp), dx.dtype)  # the tile row's 4 padded rows, all channels
        for tx in range(tw):
            j = 2 * tx
            src = ((b * TR + r) * tw + tx) * C
            for c in range(C):
                p = src + c
                (q00, q01, q02, q03, q04, q05, q06, q07, q08, q09, q10, q11, q12, q13, q14, q15) = (
                    _gather16(qf, stride, p)
                )
                # columns: e_ik = (B Q)[i, k]; then rows, (B Q) B^T, added onto the tile
                e00, e10, e20, e30 = _times_b(q00, q04, q08, q12)
                e01, e11, e21, e31 = _times_b(q01, q05, q09, q13)
                e02, e12, e22, e32 = _times_b(q02, q06, q10, q14)
                e03, e13, e23, e33 = _times_b(q03, q07, q11, q15)
                _add_row_times_bt(plane[c, 0], j, e00, e01, e02, e03)
                _add_row_times_bt(plane[c, 1], j, e10, e11, e12, e13)
                _add_row_times_bt(plane[c, 2], j, e20, e21, e22, e23)
                _add_row_times_bt(plane[c, 3], j, e30, e31, e32, e33)
        for c in range(C):
            base = ((n0 + b) * C + c) * H * W
            for i in range(4):
                iy = 2 * (ty0 + r) - ph + i
                if iy < 0 or iy >= H:
                    continue
                lo = min(pw, wp)
                hi = max(lo, min(wp, W + pw))
                dst = base + iy * W - pw
                for k in range(lo, hi):
                    xf[dst + k] += plane[c, i, k]


# ------------------------------------------------------------------------------------------------
# Drivers: chunks of tiles, the 16 products through BLAS
# ------------------------------------------------------------------------------------------------


def _chunks(n, th, tw, tile_bytes):
    """Chunks (n0, B, ty0, TR): B whole images when their tiles fit the budget, else bands of
    TR tile rows of one image."""
    budget = conv_chunks.CHUNK_BYTES if BUDGET_BYTES is None else BUDGET_BYTES
    return conv_chunks.plan_chunks(n, th, tw * tile_bytes, budget)


class _Buffers:
    """Two tile buffers in the thread's kept scratch memory (ops/conv_chunks.py), each K = a*a
    slices of (rows, B*TR*tw) tiles. The slices are spaced by a whole chunk plus one cache line:
    spaced by a power of two (2 MB for a 128x128 image of 64 channels) the K streams that every
    transform reads or writes at once fall into the same cache sets, which made the transforms
    3x slower."""

    def __init__(self, k, chunks, tw, rows_a, rows_b, dtype, memory=None):
        self.k, self.tw, self.dtype = k, tw, np.dtype(dtype)
        self.slice_a, self.slice_b = self._slices(chunks, tw, rows_a, rows_b, self.dtype)
        nbytes = self.nbytes(k, chunks, tw, rows_a, rows_b, dtype)
        memory = conv_chunks.scratch_memory(nbytes) if memory is None else memory
        self.flat = memory[:nbytes].view(self.dtype)

    @staticmethod
    def _slices(chunks, tw, rows_a, rows_b, dtype):
        tiles = max(B * TR for _, B, _, TR in chunks) * tw
        pad = 64 // dtype.itemsize
        return rows_a * tiles + pad, rows_b * tiles + pad

    @classmethod
    def nbytes(cls, k, chunks, tw, rows_a, rows_b, dtype):
        """The bytes the two buffers take, a whole number of cache lines."""
        dtype = np.dtype(dtype)
        slice_a, slice_b = cls._slices(chunks, tw, rows_a, rows_b, dtype)
        return -(-k * (slice_a + slice_b) * dtype.itemsize // 64) * 64

    @classmethod
    def for_workers(cls, k, chunks, tw, rows_a, rows_b, dtype):
        """A function that gives each worker thread that calls it its own buffers, all in the
        calling thread's kept scratch memory: the workers' own would stay allocated after the
        call (4 MB each), while the caller's is idle as they run."""
        nbytes = cls.nbytes(k, chunks, tw, rows_a, rows_b, dtype)
        memory = conv_chunks.scratch_memory(nbytes * blas_threads.pool()[1])
        taken = itertools.count()  # next() is atomic under the GIL

        def own():
            i = next(taken)
            return cls(k, chunks, tw, rows_a, rows_b, dtype, memory[i * nbytes : (i + 1) * nbytes])

        return own

    def get(self, B, TR):
        """The two buffers, (K, slice) each, for a chunk of B images and TR tile rows."""
        k, sa, sb = self.k, self.slice_a, self.slice_b
        return self.flat[: k * sa].reshape(k, sa), self.flat[k * sa : k * (sa + sb)].reshape(k, sb)


def _gemm_view(buffer, rows, cols):
    """The (K, rows, cols) operand inside a (K, slice) buffer (each slice contiguous)."""
    return buffer[:, : rows * cols].reshape(buffer.shape[0], rows, cols)


def _products(a, b, out, accumulate=False):
    """out[k] = a[k] @ b[k] for the K slices (np.matmul on the strided (K, ...) stack itself
    falls back to NumPy's own loops: 50x slower). The products are shared among Python threads
    with single-threaded BLAS (ops/blas_threads.py): one join per chunk instead of a thread
    barrier inside every product, which on a loaded machine (each barrier waits for a
    descheduled thread) made them 3x slower. Each thread's share is one GIL-free call
    (ops/gemm_batch.py)."""

    def share(i, workers):
        gemm_batch.products(a[i::workers], b[i::workers], out[i::workers], accumulate)

    blas_threads.run(share)


def _products_here(a, b, out, accumulate=False):
    """out[k] = a[k] @ b[k] (``accumulate``: +=) for the K slices, in this (worker) thread,
    whose BLAS has one thread: one GIL-free call (ops/gemm_batch.py)."""
    gemm_batch.products(a, b, out, accumulate)


# ------------------------------------------------------------------------------------------------
# Two schedules: each worker thread its own chunks, or every kernel over all threads
# ------------------------------------------------------------------------------------------------

BY_WORKER = True
"""F4 and F6 run each chunk start to end in one worker thread of ops/blas_threads.py (its
transforms with one Numba thread, its products with a one-thread BLAS), the workers taking runs
of chunks as they come free (``blas_threads.run_each``), as ops/conv_winograd_7x7.py does:
a chunk's buffers stay in its core's cache, and the threads meet once per convolution instead
of at 2 kernel launches and 1 join per chunk. Measured (forward of 3x3 64->64 on 8x64x128x128,
median / min of 5 interleaved runs, ms): F6 all threads per kernel 64-82 / 57-58, by worker
44-73 / 42-44 (PyTorch 79-124 / 78-79); F4 with dilation 2: 81 / 62 against 52 / 49 (PyTorch
86 / 78). Off (False), or without the pool (one thread, no NumPy OpenBLAS), every kernel runs
over all threads and the products are shared chunk by chunk (``_products``)."""

WORKER_BUDGET_BYTES = 4 * 2**20
"""The chunk budget by worker (``BUDGET_BYTES`` overrides it as it does the other): measured
as above, F6 2 MB 48-57, 4 MB 42-51, 8 MB 52-65, 16 MB 54-55 ms (min-median), and likewise for
F4 dilated."""

SEGMENTS_PER_WORKER = 8
"""Runs of neighbouring chunks per worker thread that the workers take in turn. Measured
(forward + both gradients of 3x3 64->64 on 8x64x128x128, median of 4 interleaved runs, ms,
budget 2 / 4 MB): 4 runs 113 / 113, 8 runs 109 / 115, 16 runs 122 / 117; dilation 2: 126 /
126, 121 / 119, 127 / 136. The data gradient's runs start where images (sub-grids) do, so it
gets at most that many."""


def runs_of_chunks(chunks, per_worker, may_cut):
    """The chunks cut into about ``per_worker`` runs of neighbours per worker thread, a cut made
    before a chunk only where ``may_cut(chunk, run so far)`` allows (each driver's rule)."""
    count = min(len(chunks), per_worker * blas_threads.pool()[1])
    runs = [[]]
    for k, chunk in enumerate(chunks):
        due = k * count >= len(runs) * len(chunks)
        if runs[-1] and due and may_cut(chunk, runs[-1]):
            runs.append([])
        runs[-1].append(chunk)
    return runs


def _segments(chunks, whole_planes):
    """The chunks cut into about ``SEGMENTS_PER_WORKER`` runs per worker; with
    ``whole_planes`` only where a plane (image or sub-grid) starts: F4's and F6's data gradient
    adds a band's first rows onto the band above it, which must not be another thread's."""
    return runs_of_chunks(
        chunks, SEGMENTS_PER_WORKER, lambda chunk, _: not whole_planes or chunk[2] == 0
    )


def _plan(f, planes, th, tw, tile_bytes, whole_planes=False):
    """(chunks, segments): segments for the by-worker schedule, or None for the other (F2, no
    pool, ``BY_WORKER`` off, or fewer whole planes than workers for a data gradient)."""
    workers = blas_threads.pool()[1]
    if BY_WORKER and (f is F4 or f is F6) and workers > 1:
        budget = WORKER_BUDGET_BYTES if BUDGET_BYTES is None else BUDGET_BYTES
        chunks = conv_chunks.plan_chunks(planes, th, tw * tile_bytes, budget)
        segments = _segments(chunks, whole_planes)
        if len(segments) >= workers:
            return chunks, segments
    return _chunks(planes, th, tw, tile_bytes), None


def _for_each_chunk(chunks, segments, begin, one_chunk, end=None):
    """``state = begin()``, ``one_chunk(state, chunk, products)`` for every chunk, ``end(state)``:
    by worker (each worker its own state, its products in its thread) when ``segments`` is given,
    else in this thread with the products shared among the pool (``_products``)."""
    if segments is None:
        state = begin()
        for chunk in chunks:
            one_chunk(state, chunk, _products)
        if end is not None:
            end(state)
        return

    def do(state, j):
        for chunk in segments[j]:
            one_chunk(state, chunk, _products_here)

    blas_threads.run_each(len(segments), begin, do, end)


def _buffers(segments, k, chunks, tw, rows_a, rows_b, dtype):
    """``begin`` of the buffers for ``_for_each_chunk``: by worker, each worker its share of the
    calling thread's scratch memory (``_Buffers.for_workers``); else the caller's buffers."""
    if segments is None:
        return lambda: _Buffers(k, chunks, tw, rows_a, rows_b, dtype)
    return _Buffers.for_workers(k, chunks, tw, rows_a, rows_b, dtype)


def _filter_transform(w, f):
    return filter_transform_ref(w, f)  # (K, O, C): small, once per call; NumPy is fast enough


def _filter_transform_adjoint(s_t, f):
    """S^T (K, C, O) -> dw (O, C, r, r) = G^T S[:, o, c] G, i.e. np.einsum("ai,abco,bj->ocij",
    G, S^T, G) as two products (the single einsum loop took 4.5 ms for F4 and 64x64)."""
    a, (_, C, O) = f.a, s_t.shape
    g = f.G.astype(s_t.dtype)
    t = np.tensordot(g, s_t.reshape(a, a, C, O), axes=([0], [0]))  # (r, a, C, O): G^T S
    dw = np.tensordot(t, g, axes=([1], [0]))  # (r, C, O, r): G^T S G
    return np.ascontiguousarray(dw.transpose(2, 1, 0, 3))


def _undilated(dilation, name):
    if dilation != 1:  # the drivers give F2 copied sub-grids (``_copies_subgrids``)
        raise ValueError(f"{name}: F(2x2, 3x3)'s kernels take undilated planes, got {dilation}")


def _input_transform_f2(x, v, tiles, n0, ty0, ph, pw, dilation):
    _undilated(dilation, "input transform")
    _input_transform(x, v, tiles, n0, ty0, ph, pw)


def _output_transform_f2(m, tiles, y, bias, n0, ty0, dilation):
    _undilated(dilation, "output transform")
    _output_transform(m, tiles, y, bias, n0, ty0)


def _output_transform_adjoint_f2(dy, z, tiles, n0, ty0, dilation):
    _undilated(dilation, "output transform adjoint")
    _output_transform_adjoint(dy, z, tiles, n0, ty0)


def _input_transform_adjoint_f2(q, tiles, dx, n0, ty0, ph, pw, dilation):
    _undilated(dilation, "input transform adjoint")
    for parity in (0, 1):  # tile rows two apart do not overlap: two passes, each race-free
        _input_transform_adjoint(q, tiles, dx, n0, ty0, ph, pw, parity)


def _kernels(f):
    """The Numba transforms of variant f (input, output, output adjoint, input adjoint), all
    with F4's signatures, and whether its products keep channels as rows ((O, P) outputs, F4)
    or as columns ((P, O), F2; module docstring: OpenBLAS ran (P, C) @ (C, O) faster for F2's
    2048-tile chunks, and the two ran alike for F4's 512-tile ones, whose transforms want tiles
    contiguous)."""
    if f is F4 or f is F6:
        tile = f4 if f is F4 else f6
        return (
            tile.input_transform, tile.output_transform,
            tile.output_transform_adjoint, tile.input_transform_adjoint, True,
        )  # fmt: skip
    return (
        _input_transform_f2, _output_transform_f2,
        _output_transform_adjoint_f2, _input_transform_adjoint_f2, False,
    )  # fmt: skip


def _copies_subgrids(dilation, f) -> bool:
    """True where a dilated convolution's sub-grids are copied into planes of their own
    (ops/conv_winograd_dilated.py's gather and scatter) before the undilated driver runs: F2,
    whose kernels read whole planes. F4's and F6's kernels read and write the sub-grids in place
    (``conv_winograd_f4._subgrid``), which saves the five copies of a forward and backward pass.
    Measured (3x3 dilation 2 64->64 on 8x64x128x128, forward + both gradients through
    F.conv2d, interleaved with PyTorch, median of 5 and of 7 in two runs, ms): copies 189 / 183,
    in place 157 / 155, PyTorch 154 / 157, the row-shift path 189 / 200. What is left above the
    undilated case (about 15 ms) is in the transforms: strided reads and writes, and planes a
    quarter the size, whose tile rows are shorter."""
    return tuple(dilation) != (1, 1) and f is F2


def _planes(n, in_size, padding, d, r=3):
    """(planes, (rows, cols)): the planes the kernels walk and each one's output size, for an
    r x r filter. With d = 1 the N images, each padded by ``padding``; with dilation d the d*d
    sub-grids of each padded image (``conv_winograd_f4._subgrid``), each an undilated problem
    with output (Hs - r + 1, Ws - r + 1), Hs = ceil((H + 2 ph) / d), cut to the real output by
    the kernels."""
    hs, ws = dilated.subgrid_size(in_size, padding, d)
    return d * d * n, (hs - r + 1, ws - r + 1)


def conv2d_forward(x, w, padding, bias=None, dilation=(1, 1), f=None):
    """y (N, O, Ho, Wo) of a 3x3, stride-1 convolution with zero padding ``padding`` = (ph, pw)
    and dilation (d, d) (on the sub-grids, ops/conv_winograd_dilated.py), by variant f (None:
    ``_variant``'s choice)."""
    e = w.shape[2] - 1  # the filter's extent beyond one pixel, before dilation
    out_pixels = x.shape[0] * (x.shape[2] + 2 * padding[0] - e * dilation[0])
    out_pixels *= x.shape[3] + 2 * padding[1] - e * dilation[1]
    f = _variant(f, dilation, out_pixels, w.shape[2])
    if _copies_subgrids(dilation, f):  # each sub-grid copied out: an undilated problem
        d, (n, _, h, wd) = dilation[0], x.shape
        out_size = (h + 2 * padding[0] - 2 * d, wd + 2 * padding[1] - 2 * d)
        x_sub = dilated.gather_subgrids(x, d, dilated.subgrid_size((h, wd), padding, d), padding)
        y_sub = conv2d_forward(x_sub, w, (0, 0), bias, f=f)
        return dilated.scatter_subgrids(y_sub, d, n, out_size)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, C, H, W = x.shape
    O = w.shape[0]
    ph, pw = padding
    d = dilation[0]
    Ho, Wo = H + 2 * ph - e * d, W + 2 * pw - e * d
    K = f.a * f.a
    planes, plane_out = _planes(N, (H, W), padding, d, f.r)
    th, tw = _tiles(*plane_out, f.m)
    ut = np.ascontiguousarray(_filter_transform(w, f).transpose(0, 2, 1))  # (K, C, O)
    y = np.empty((N, O, Ho, Wo), x.dtype)
    chunks, segments = _plan(f, planes, th, tw, K * (C + O) * x.itemsize)
    b = np.zeros(O, x.dtype) if bias is None else np.ascontiguousarray(bias)
    input_transform, output_transform, _, _, channel_rows = _kernels(f)

    def one_chunk(buffers, chunk, products):
        n0, B, ty0, TR = chunk
        v, m = buffers.get(B, TR)
        tiles = (B, TR, tw)
        input_transform(x, v, tiles, n0, ty0, ph, pw, d)
        P = B * TR * tw
        if channel_rows:  # (O, C) @ (C, P)
            products(ut.transpose(0, 2, 1), _gemm_view(v, C, P), _gemm_view(m, O, P))
        else:  # (P, C) @ (C, O)
            products(_gemm_view(v, C, P).transpose(0, 2, 1), ut, _gemm_view(m, P, O))
        output_transform(m, tiles, y, b, n0, ty0, d)

    _for_each_chunk(chunks, segments, _buffers(segments, K, chunks, tw, C, O, x.dtype), one_chunk)
    return y


def conv2d_data_grad(dy, w, in_size, padding, dilation=(1, 1), f=None):
    """dx (N, C, H, W) of ``conv2d_forward`` from dy (N, O, Ho, Wo)."""
    f = _variant(f, dilation, dy.shape[0] * dy.shape[2] * dy.shape[3], w.shape[2])
    if _copies_subgrids(dilation, f):  # the adjoint of the sub-grid rearrangement above
        d = dilation[0]
        hs, ws = dilated.subgrid_size(in_size, padding, d)
        dy_sub = dilated.gather_subgrids(dy, d, (hs - 2, ws - 2))
        dx_sub = conv2d_data_grad(dy_sub, w, (hs, ws), (0, 0), f=f)
        return dilated.scatter_subgrids(dx_sub, d, dy.shape[0], in_size, padding)
    dy, w = np.ascontiguousarray(dy), np.ascontiguousarray(w)
    N, O = dy.shape[:2]
    d = dilation[0]
    C, K = w.shape[1], f.a * f.a
    planes, plane_out = _planes(N, in_size, padding, d, f.r)
    th, tw = _tiles(*plane_out, f.m)
    u = _filter_transform(w, f)  # (K, O, C)
    # F4 and F6 store every pixel of dx once (band by band, in order); F2 adds onto zeros
    dx = (np.zeros if f is F2 else np.empty)((N, C) + tuple(in_size), dy.dtype)
    chunks, segments = _plan(f, planes, th, tw, K * (C + O) * dy.itemsize, whole_planes=True)
    _, _, output_transform_adjoint, input_transform_adjoint, channel_rows = _kernels(f)
    ut = np.ascontiguousarray(u.transpose(0, 2, 1)) if channel_rows else u

    def one_chunk(buffers, chunk, products):
        n0, B, ty0, TR = chunk
        z, q = buffers.get(B, TR)
        tiles = (B, TR, tw)
        output_transform_adjoint(dy, z, tiles, n0, ty0, d)
        P = B * TR * tw
        if channel_rows:  # (C, O) @ (O, P)
            products(ut, _gemm_view(z, O, P), _gemm_view(q, C, P))
        else:  # (P, O) @ (O, C)
            products(_gemm_view(z, O, P).transpose(0, 2, 1), u, _gemm_view(q, P, C))
        input_transform_adjoint(q, tiles, dx, n0, ty0, *padding, d)

    _for_each_chunk(chunks, segments, _buffers(segments, K, chunks, tw, O, C, dy.dtype), one_chunk)
    return dx


def conv2d_weight_grad(x, dy, padding, dilation=(1, 1), f=None):
    """dw (O, C, r, r) of ``conv2d_forward`` from x (N, C, H, W) and dy (N, O, Ho, Wo)."""
    r = (x.shape[2] + 2 * padding[0] - dy.shape[2]) // dilation[0] + 1
    f = _variant(f, dilation, dy.shape[0] * dy.shape[2] * dy.shape[3], r)
    if _copies_subgrids(dilation, f):
        d = dilation[0]
        hs, ws = dilated.subgrid_size(x.shape[2:], padding, d)
        x_sub = dilated.gather_subgrids(x, d, (hs, ws), padding)
        dy_sub = dilated.gather_subgrids(dy, d, (hs - 2, ws - 2))
        return conv2d_weight_grad(x_sub, dy_sub, (0, 0), f=f)
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    N, C = x.shape[:2]
    O = dy.shape[1]
    d = dilation[0]
    K = f.a * f.a
    planes, plane_out = _planes(N, x.shape[2:], padding, d, f.r)
    th, tw = _tiles(*plane_out, f.m)
    chunks, segments = _plan(f, planes, th, tw, K * (C + O) * x.itemsize)
    input_transform, _, output_transform_adjoint, _, _ = _kernels(f)
    # Accumulated transposed, S^T = sum V @ Z^T (K, C, O), as ops/conv_engine.py does for its dw;
    # by worker, one sum per worker, added at the end.
    sums = []
    buffers = _buffers(segments, K, chunks, tw, C, O, x.dtype)

    def begin():
        return buffers(), np.zeros((K, C, O), x.dtype)

    def one_chunk(state, chunk, products):
        buffers, s_t = state
        n0, B, ty0, TR = chunk
        v, z = buffers.get(B, TR)
        tiles = (B, TR, tw)
        input_transform(x, v, tiles, n0, ty0, *padding, d)
        output_transform_adjoint(dy, z, tiles, n0, ty0, d)
        P = B * TR * tw
        v_cp, z_po = _gemm_view(v, C, P), _gemm_view(z, O, P).transpose(0, 2, 1)
        products(v_cp, z_po, s_t, accumulate=True)  # S^T += (C, P) @ (P, O)

    _for_each_chunk(chunks, segments, begin, one_chunk, lambda state: sums.append(state[1]))
    return _filter_transform_adjoint(sum(sums[1:], sums[0]), f)


def conv2d_grads(x, dy, w, padding, dilation=(1, 1), f=None):
    """(dx, dw) of ``conv2d_forward`` in one pass: each chunk's output-gradient transform Z
    serves both products (``conv2d_data_grad`` and ``conv2d_weight_grad`` each compute it),
    and the input transform V reuses the buffer of Q once dx has been taken from it. What that
    buys (3x3 64->64, 8x64x128x128, F4): one of the four transforms of the backward pass, about
    16 ms of 130."""
    f = _variant(f, dilation, dy.shape[0] * dy.shape[2] * dy.shape[3], w.shape[2])
    if _copies_subgrids(dilation, f):
        d, (n, _, h, wd) = dilation[0], x.shape
        hs, ws = dilated.subgrid_size((h, wd), padding, d)
        x_sub = dilated.gather_subgrids(x, d, (hs, ws), padding)
        dy_sub = dilated.gather_subgrids(dy, d, (hs - 2, ws - 2))
        dx_sub, dw = conv2d_grads(x_sub, dy_sub, w, (0, 0), f=f)
        return dilated.scatter_subgrids(dx_sub, d, n, (h, wd), padding), dw
    x, dy, w = np.ascontiguousarray(x), np.ascontiguousarray(dy), np.ascontiguousarray(w)
    N, C = x.shape[:2]
    O = dy.shape[1]
    d = dilation[0]
    K = f.a * f.a
    planes, plane_out = _planes(N, x.shape[2:], padding, d, f.r)
    th, tw = _tiles(*plane_out, f.m)
    u = _filter_transform(w, f)  # (K, O, C)
    dx = (np.zeros if f is F2 else np.empty)(x.shape, x.dtype)  # as conv2d_data_grad
    chunks, segments = _plan(f, planes, th, tw, K * (C + O) * x.itemsize, whole_planes=True)
    input_transform, _, output_transform_adjoint, input_transform_adjoint, channel_rows = _kernels(
        f
    )
    ut = np.ascontiguousarray(u.transpose(0, 2, 1)) if channel_rows else u
    sums = []
    buffers = _buffers(segments, K, chunks, tw, O, C, x.dtype)

    def begin():
        return buffers(), np.zeros((K, C, O), x.dtype)

    def one_chunk(state, chunk, products):
        buffers, s_t = state
        n0, B, ty0, TR = chunk
        z, qv = buffers.get(B, TR)  # qv holds Q, then V (both C rows)
        tiles = (B, TR, tw)
        output_transform_adjoint(dy, z, tiles, n0, ty0, d)
        P = B * TR * tw
        if channel_rows:  # (C, O) @ (O, P)
            products(ut, _gemm_view(z, O, P), _gemm_view(qv, C, P))
        else:  # (P, O) @ (O, C)
            products(_gemm_view(z, O, P).transpose(0, 2, 1), u, _gemm_view(qv, P, C))
        input_transform_adjoint(qv, tiles, dx, n0, ty0, *padding, d)
        input_transform(x, qv, tiles, n0, ty0, *padding, d)
        v_cp, z_po = _gemm_view(qv, C, P), _gemm_view(z, O, P).transpose(0, 2, 1)
        products(v_cp, z_po, s_t, accumulate=True)  # S^T += (C, P) @ (P, O)

    _for_each_chunk(chunks, segments, begin, one_chunk, lambda state: sums.append(state[1]))
    return dx, _filter_transform_adjoint(sum(sums[1:], sums[0]), f)
