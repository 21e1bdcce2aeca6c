"""The fully connected CRF of Krähenbühl and Koltun (2011), with mean-field inference.

Every pixel i of an (H, W) image gets a label x_i in {0..L-1}. The energy is

    E(x) = sum_i U_i(x_i) + sum_{i<j} mu(x_i, x_j) k(f_i, f_j)

    U_i(l)      = -log P_i(l)                       the network's softmax probability P (L, H, W)
    mu(l, l')   = [l != l']                          Potts compatibility (trainable in nn/crf.py)
    k(f_i, f_j) = w1 exp(-|p_i-p_j|^2 / 2ta^2 - |I_i-I_j|^2 / 2tb^2)      appearance (bilateral)
                + w2 exp(-|p_i-p_j|^2 / 2tg^2)                             smoothness (position)

with p a pixel's (row, column) position, I its colour, ta/tb/tg = theta_alpha/beta/gamma. Both
kernels are Gaussians exp(-|f_i - f_j|^2 / 2) of scaled features: f = (p/ta, I/tb) (d = 5)
and f = p/tg (d = 2). Mean field approximates P(x) by Q = prod_i Q_i and iterates

    Q_i      <- softmax(-U_i)                                    (initialisation)
    m_i(l)   = sum_kernels w_m sum_j k_m(f_i, f_j) Q_j(l)         message passing: a FILTER
    E_i(l)   = U_i(l) + sum_l' mu(l, l') m_i(l')                  compatibility transform
    Q_i      <- softmax(-E_i)                                    normalise

so every iteration costs two Gaussian filters of the (N, L) array Q, N = H*W. The filter is
the only expensive part, and this module has it twice:

* ``exact_filter``: the definition, sum_j exp(-|f_i-f_j|^2/2) v_j as an (N, N) matrix. O(N^2)
  time and memory: for tiny images and as the reference.
* ``Lattice``: the permutohedral lattice of Adams, Baek and Davis (2010). Each point is lifted
  onto the hyperplane x.1 = 0 of R^(d+1), which is tiled by simplices whose vertices form the
  lattice; a point "splats" its value onto the d+1 vertices of its simplex with barycentric
  weights, the lattice is blurred by [1/2, 1, 1/2] along each of the d+1 lattice directions, and
  each point "slices" (reads back) from its vertices with the same weights:

      filter(v) = alpha * S^T B_d ... B_1 B_0 S v        alpha = 1 / (1 + 2^-d)

  O(N d^2) to build and O(N d L) per filter. It approximates the Gaussian (the measured error
  against ``exact_filter`` is in tests/test_crf.py and benchmarks/results/crf.md). Each blur
  B_j is a symmetric matrix, so the transpose, needed for backpropagation, is the same filter
  with the blurs in reverse order (``transpose=True``).

Self term and normalisation (``normalization=``). Both filters include j = i (as the authors'
code does: the lattice cannot leave it out).

* ``"symmetric"`` (default, as ``pydensecrf``'s default NORMALIZE_SYMMETRIC): with n = K 1 the
  kernel's row sums, the message is n^-1/2 * K(n^-1/2 * v): every pixel's kernel sums to about
  1, whatever the image.
* ``"none"``: the paper's plain sum over j != i, K v - v (k(f_i, f_i) = 1). Exact with
  ``method="exact"``; the lattice's raw Gaussian has less total mass than the exact one (by a
  factor of about 0.88 for d = 2 and 0.4-0.6 for d = 5 on images, measured), so with the
  lattice use it knowing that the kernel weights are effectively scaled down.

Measured (benchmarks/results/crf.md, busy shared 2-core machine): normalised, the lattice is
within 0.3-1.3% (relative L2) of the exact filter for the usual widths (tests/test_crf.py);
mean field agrees with pydensecrf2's labels on >99.9% of pixels.

Shapes: image (H, W, 3) (uint8 or float; colour in 0..255 units), probabilities (L, H, W)
float32/float64 summing to 1 over L. Features (N, d), values (N, C).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = [
    "CRFParams",
    "check_inputs",
    "crf_features",
    "exact_filter",
    "Lattice",
    "build_lattice",
    "make_filter",
    "mean_field",
    "dense_crf",
    "NORMALIZATIONS",
]

NORMALIZATIONS = ("symmetric", "none")


class CRFParams:
    """The CRF's parameters. Defaults: the values of pydensecrf's examples (Krähenbühl's
    inference.cpp: bilateral w1=10, theta_alpha=80, theta_beta=13; Gaussian w2=3, theta_gamma=3).
    ``iterations`` mean-field steps; ``normalization`` in NORMALIZATIONS (module docstring)."""

    def __init__(
        self,
        w1: float = 10.0,
        theta_alpha: float = 80.0,
        theta_beta: float = 13.0,
        w2: float = 3.0,
        theta_gamma: float = 3.0,
        iterations: int = 10,
        normalization: str = "symmetric",
    ):
        for name, value in (("w1", w1), ("w2", w2)):
            if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(
                value, bool
            ):
                raise TypeError(f"CRF: {name} must be a number, got {value!r}")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"CRF: {name} must be a finite number >= 0, got {value!r}")
        for name, value in (
            ("theta_alpha", theta_alpha),
            ("theta_beta", theta_beta),
            ("theta_gamma", theta_gamma),
        ):
            if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(
                value, bool
            ):
                raise TypeError(f"CRF: {name} (a kernel width) must be a number, got {value!r}")
            if not (np.isfinite(value) and value > 0):
                raise ValueError(
                    f"CRF: {name} (a kernel width) must be a finite number > 0, got {value!r}"
                )
        if (
            not isinstance(iterations, (int, np.integer))
            or isinstance(iterations, bool)
            or iterations < 0
        ):
            raise ValueError(f"CRF: iterations must be an int >= 0, got {iterations!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"CRF: normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        self.w1, self.w2 = float(w1), float(w2)
        self.theta_alpha, self.theta_beta = float(theta_alpha), float(theta_beta)
        self.theta_gamma = float(theta_gamma)
        self.iterations = int(iterations)
        self.normalization = normalization

    def __repr__(self):
        return (
            f"CRFParams(w1={self.w1}, theta_alpha={self.theta_alpha}, theta_beta="
            f"{self.theta_beta}, w2={self.w2}, theta_gamma={self.theta_gamma}, iterations="
            f"{self.iterations}, normalization={self.normalization!r})"
        )


def check_inputs(image, probabilities, op: str = "CRF"):
    """Validate an (H, W, 3) image and (L, H, W) probabilities; errors name the argument."""
    for name, a in (("image", image), ("probabilities", probabilities)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{op}: {name} must be a NumPy array, got {type(a).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{op}: image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8 and image.dtype.kind != "f":
        raise TypeError(f"{op}: image must have dtype uint8 or a float dtype, got {image.dtype}")
    if probabilities.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{op}: probabilities must have dtype float32 or float64, got {probabilities.dtype}"
        )
    if probabilities.ndim != 3 or probabilities.shape[0] < 1:
        raise ValueError(
            f"{op}: probabilities must have shape (L, H, W) with L >= 1, got {probabilities.shape}"
        )
    if probabilities.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"{op}: image (H, W) = {image.shape[:2]} and probabilities (H, W) = "
            f"{probabilities.shape[1:]} must match"
        )
    if not np.all(np.isfinite(probabilities)) or probabilities.min(initial=0.0) < 0:
        raise ValueError(f"{op}: probabilities must be finite and >= 0")


def crf_features(image, params: CRFParams, dtype=np.float32):
    """The two kernels' scaled features: appearance (N, 5) = (row/ta, col/ta, rgb/tb) and
    smoothness (N, 2) = (row/tg, col/tg), pixels in row-major order."""
    h, w = image.shape[:2]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w), indexing="ij")
    pos = np.stack([rows.ravel(), cols.ravel()], axis=1)
    rgb = image.reshape(h * w, 3).astype(np.float64)
    appearance = np.concatenate([pos / params.theta_alpha, rgb / params.theta_beta], axis=1)
    smoothness = pos / params.theta_gamma
    return appearance.astype(dtype), smoothness.astype(dtype)


# ---------------------------------------------------------------------------- the definition
def exact_filter(features, values):
    """sum_j exp(-|f_i - f_j|^2 / 2) values_j for every i (j = i included): (N, d), (N, C) ->
    (N, C). Builds the (N, N) kernel matrix: tiny inputs only."""
    f = np.asarray(features, np.float64)
    sq = (f * f).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0)
    return (np.exp(-0.5 * d2) @ values.astype(np.float64)).astype(values.dtype)


# ------------------------------------------------------------- the permutohedral lattice
@njit(parallel=True, cache=True)
def _simplices(features):
    """Phase 1 of the build, independent per point (so parallel): the d+1 vertex keys (N, d+1, d)
    of the simplex enclosing each lifted point, and its barycentric weights (N, d+1)."""
    n, d = features.shape
    scale = np.empty(d)
    inv_std = np.sqrt(2.0 / 3.0) * (d + 1)  # makes the blur a Gaussian of std 1 in f
    for i in range(d):
        scale[i] = inv_std / np.sqrt((i + 1.0) * (i + 2.0))
    keys = np.empty((n, d + 1, d), np.int32)
    weight = np.empty((n, d + 1), np.float32)
    for p in prange(n):
        elevated = np.empty(d + 1)
        rem0 = np.empty(d + 1, np.int64)
        rank = np.zeros(d + 1, np.int64)
        bary = np.zeros(d + 2)
        # elevate onto the hyperplane x.1 = 0: E f, E's rows orthogonal (Adams' eq. 3)
        sm = 0.0
        for j in range(d, 0, -1):
            cf = features[p, j - 1] * scale[j - 1]
            elevated[j] = sm - j * cf
            sm += cf
        elevated[0] = sm
        # the nearest remainder-0 lattice point, by rounding to multiples of d+1
        s = 0
        for i in range(d + 1):
            rd = np.int64(np.round(elevated[i] / (d + 1)))
            rem0[i] = rd * (d + 1)
            s += rd
        # rank: the position of each coordinate of (elevated - rem0) in decreasing order
        for i in range(d):
            di = elevated[i] - rem0[i]
            for j in range(i + 1, d + 1):
                if di < elevated[j] - rem0[j]:
                    rank[i] += 1
                else:
                    rank[j] += 1
        # if rem0 is off the plane (sum != 0), walk it back
        for i in range(d + 1):
            rank[i] += s
            if rank[i] < 0:
                rank[i] += d + 1
                rem0[i] += d + 1
            elif rank[i] > d:
                rank[i] -= d + 1
                rem0[i] -= d + 1
        # barycentric coordinates (Adams' p. 10)
        for i in range(d + 1):
            v = (elevated[i] - rem0[i]) / (d + 1)
            bary[d - rank[i]] += v
            bary[d - rank[i] + 1] -= v
        bary[0] += 1.0 + bary[d + 1]
        # the d+1 vertices: rem0 + the canonical simplex' vertex r, permuted by rank (the last
        # coordinate is implied: keys sum to 0)
        for r in range(d + 1):
            for i in range(d):
                c = r if rank[i] <= d - r else r - (d + 1)
                keys[p, r, i] = rem0[i] + c
            weight[p, r] = bary[r]
    return keys, weight


@njit(inline="always")
def _hash(key, d):
    h = np.int64(0)
    for i in range(d):
        h = (h + key[i]) * np.int64(2531011)
    return h


@njit(inline="always")
def _find(table, vertices, key, mask, d):
    """Index of ``key`` in the open-addressing table (linear probing), -(slot+1) if absent."""
    slot = _hash(key, d) & mask
    while True:
        idx = table[slot]
        if idx < 0:
            return -(slot + 1)
        same = True
        for i in range(d):
            if vertices[idx, i] != key[i]:
                same = False
                break
        if same:
            return idx
        slot = (slot + 1) & mask


@njit(cache=True)
def _insert(keys):
    """Phase 2, sequential: number the distinct keys (a hash table). Returns offset (N, d+1)
    (1-based vertex indices: 0 is the "missing" vertex, all zeros), the vertices' keys (M, d),
    and the table. The table starts small and doubles when half full: an image has far fewer
    vertices than N (d+1) (55770 of 1.04M at 360x480, d = 5), and a table that fits the cache
    halves the build (measured 25 -> 12 ms insert, 38 -> 17 ms neighbours; busy machine)."""
    n, k, d = keys.shape
    cap = 1024
    mask = cap - 1
    table = np.full(cap, -1, np.int32)  # slot -> vertex index (0-based) or -1
    vertices = np.empty((n * k, d), np.int32)
    offset = np.empty((n, k), np.int32)
    m = 0
    for p in range(n):
        for r in range(k):
            idx = _find(table, vertices, keys[p, r], mask, d)
            if idx < 0:
                table[-idx - 1] = m
                vertices[m] = keys[p, r]
                idx = m
                m += 1
                if 2 * m > cap:  # rehash into a table twice the size
                    cap *= 2
                    mask = cap - 1
                    table = np.full(cap, -1, np.int32)
                    for v in range(m):
                        slot = _find(table, vertices, vertices[v], mask, d)
                        table[-slot - 1] = v
            offset[p, r] = idx + 1
    return offset, vertices[:m].copy(), table


@njit(parallel=True, cache=True)
def _neighbours(vertices, table):
    """Phase 3, parallel (the table is only read): each vertex' two neighbours along lattice
    axis j, key - 1 everywhere but + d at j and the reverse (0 when absent). (d+1, M+1, 2)."""
    m, d = vertices.shape
    mask = table.shape[0] - 1
    out = np.zeros((d + 1, m + 1, 2), np.int32)
    for v in prange(m):
        nkey = np.empty(d, np.int32)
        for j in range(d + 1):
            for side in range(2):
                sign = 1 if side == 0 else -1
                for i in range(d):
                    nkey[i] = vertices[v, i] + (sign * d if i == j else -sign)
                idx = _find(table, vertices, nkey, mask, d)
                out[j, v + 1, side] = idx + 1 if idx >= 0 else 0
    return out


def _build(features):
    """The lattice of Adams et al. 2010, sec. 3, following Krähenbühl's permutohedral.cpp:
    offset (N, d+1) int32   the vertex index of each point's simplex corners (1-based)
    weight (N, d+1) float32 the barycentric weights
    neighbours (d+1, M+1, 2) int32  each vertex' two neighbours along each lattice axis
    """
    keys, weight = _simplices(features)
    offset, vertices, table = _insert(keys)
    return offset, weight, _neighbours(vertices, table)


@njit(cache=True)
def _invert(offset, weight, m):
    """The splat as a gather: for each vertex, the (point, weight) pairs that splat onto it, in
    CSR form (start (M+2,), point, weight). Lets the splat run in parallel without atomics."""
    n, k = offset.shape
    count = np.zeros(m + 2, np.int64)
    for p in range(n):
        for r in range(k):
            count[offset[p, r] + 1] += 1
    for v in range(1, m + 2):
        count[v] += count[v - 1]
    start = count.copy()
    point = np.empty(n * k, np.int32)
    wgt = np.empty(n * k, np.float32)
    fill = count[:-1].copy()
    for p in range(n):
        for r in range(k):
            v = offset[p, r]
            point[fill[v]] = p
            wgt[fill[v]] = weight[p, r]
            fill[v] += 1
    return start, point, wgt


@njit(parallel=True, cache=True, fastmath=True)
def _splat(start, point, wgt, values, scale, out):
    """out[v] = sum over the points p splatting onto vertex v of weight * scale[p] * values[p]."""
    m1, c = out.shape
    for v in prange(1, m1):
        for k in range(c):
            out[v, k] = 0.0
        for e in range(start[v], start[v + 1]):
            p = point[e]
            w = wgt[e] * scale[p]
            for k in range(c):
                out[v, k] += w * values[p, k]
    for k in range(c):
        out[0, k] = 0.0


@njit(parallel=True, cache=True, fastmath=True)
def _blur(neighbours, src, dst):
    """dst[v] = src[v] + (src[n1] + src[n2]) / 2 along one lattice axis (0 = missing: zeros)."""
    m1, c = src.shape
    for v in prange(1, m1):
        n1 = neighbours[v, 0]
        n2 = neighbours[v, 1]
        for k in range(c):
            dst[v, k] = src[v, k] + 0.5 * (src[n1, k] + src[n2, k])
    for k in range(c):
        dst[0, k] = 0.0


@njit(parallel=True, cache=True, fastmath=True)
def _slice(offset, weight, lattice, alpha, scale, out):
    """out[p] = alpha * scale[p] * sum_r weight[p, r] * lattice[offset[p, r]]."""
    n, k1 = offset.shape
    c = out.shape[1]
    for p in prange(n):
        for k in range(c):
            out[p, k] = 0.0
        for r in range(k1):
            w = weight[p, r] * alpha * scale[p]
            o = offset[p, r]
            for k in range(c):
                out[p, k] += w * lattice[o, k]


@njit(cache=True, fastmath=True)
def _blur_serial(neighbours, src, dst):
    """_blur on one thread."""
    m1, c = src.shape
    for k in range(c):
        dst[0, k] = 0.0  # the missing vertex
    for v in range(1, m1):
        n1 = neighbours[v, 0]
        n2 = neighbours[v, 1]
        for k in range(c):
            dst[v, k] = src[v, k] + 0.5 * (src[n1, k] + src[n2, k])


@njit(parallel=True, cache=True, fastmath=True)
def _filter_groups(start, point, wgt, offset, weight, neighbours, order, alpha, scale, values,
                   out, groups):  # fmt: skip
    """splat -> blurs (in ``order``) -> slice, all in ONE parallel region: the channels are cut
    into one group per thread and each thread runs the whole pipeline on its group (the blurs
    need no barrier then: they only read the thread's own lattice copy). out is (C, N), so the
    threads write disjoint rows. Equal to _splat, _blur x (d+1), _slice (tested); it exists
    because each parallel region ends in a barrier, and on a shared machine a barrier waits for
    a descheduled thread: 8 regions per filter made a 90x120 CRF 30x slower than 1 region
    (3.0 s vs 0.1 s, 2 threads, load average 10)."""
    n, c = values.shape
    m1 = neighbours.shape[1]
    for g in prange(groups):
        c0 = g * c // groups
        cg = (g + 1) * c // groups - c0
        # views, not c0 + k indices: an index of unknown sign costs a wraparound check per
        # element and blocks vectorisation (the splat ran 4x slower: 21 vs 5.5 ms)
        _pipeline(start, point, wgt, offset, weight, neighbours, order, alpha, scale,
                  values[:, c0 : c0 + cg], out[c0 : c0 + cg], m1)  # fmt: skip


@njit(cache=True, fastmath=True)
def _pipeline(start, point, wgt, offset, weight, neighbours, order, alpha, scale, values, out,
              m1):  # fmt: skip
    """splat -> blurs -> slice on one thread, for values (N, cg) into out (cg, N)."""
    cg = values.shape[1]
    a = np.empty((m1, cg), values.dtype)
    b = np.empty((m1, cg), values.dtype)
    _splat_serial(start, point, wgt, values, scale, a)
    for j in order:
        _blur_serial(neighbours[j], a, b)
        a, b = b, a
    _slice_serial(offset, weight, a, alpha, scale, out)


@njit(cache=True, fastmath=True)
def _splat_serial(start, point, wgt, values, scale, out):
    """_splat on one thread."""
    m1, cg = out.shape
    acc = np.empty(cg, out.dtype)  # a local accumulator: LLVM cannot see that out and values
    for k in range(cg):  # do not alias, and would store out[v, k] on every term (2.8x slower)
        out[0, k] = 0.0
    for v in range(1, m1):
        for k in range(cg):
            acc[k] = 0.0
        for e in range(start[v], start[v + 1]):
            p = point[e]
            w = wgt[e] * scale[p]
            for k in range(cg):
                acc[k] += w * values[p, k]
        for k in range(cg):
            out[v, k] = acc[k]


@njit(cache=True, fastmath=True)
def _slice_serial(offset, weight, lattice, alpha, scale, out):
    """_slice on one thread into out (C, N) (channel-major: the caller's rows)."""
    n, k1 = offset.shape
    cg = lattice.shape[1]
    acc = np.empty(cg, lattice.dtype)
    for p in range(n):
        for k in range(cg):
            acc[k] = 0.0
        for r in range(k1):
            w = weight[p, r] * alpha * scale[p]
            o = offset[p, r]
            for k in range(cg):
                acc[k] += w * lattice[o, k]
        for k in range(cg):
            out[k, p] = acc[k]


def build_lattice(features):
    """(offset, weight, neighbours) of the lattice for float features (N, d), d >= 1."""
    f = np.ascontiguousarray(features, np.float32)
    if f.ndim != 2 or f.shape[1] < 1:
        raise ValueError(f"Lattice: features must have shape (N, d) with d >= 1, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("Lattice: features must be finite")
    return _build(f)


class Lattice:
    """The permutohedral lattice for features (N, d): ``filter(values (N, C))`` approximates
    ``exact_filter(features, values)``; ``filter(values, transpose=True)`` applies the
    transposed matrix (blurs in reverse order), the backward of ``filter``; with ``scale`` (N,)
    it computes scale * K(scale * values), the symmetric normalisation folded into the splat
    and the slice (saves two passes over the (N, C) array per filter)."""

    def __init__(self, features):
        self.offset, self.weight, neighbours = build_lattice(features)
        self.n, k = self.offset.shape
        self.d = k - 1
        self.m = neighbours.shape[1] - 1
        self.neighbour_table = neighbours
        self.neighbours = [np.ascontiguousarray(neighbours[j]) for j in range(k)]
        self.start, self.point, self.wgt = _invert(self.offset, self.weight, self.m)
        self.alpha = 1.0 / (1.0 + 2.0 ** (-self.d))

    def filter_steps(self, values, transpose: bool = False, scale=None):
        """``filter`` as three visible steps (one parallel kernel each): the readable version."""
        if values.ndim != 2 or values.shape[0] != self.n:
            raise ValueError(
                f"Lattice.filter: values must have shape ({self.n}, C), got {values.shape}"
            )
        dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.float32
        v = np.ascontiguousarray(values, dtype)
        if scale is None:
            scale = np.ones(self.n, dtype)
        scale = np.ascontiguousarray(scale, dtype)
        a = np.empty((self.m + 1, v.shape[1]), dtype)
        b = np.empty_like(a)
        _splat(self.start, self.point, self.wgt, v, scale, a)
        order = range(self.d, -1, -1) if transpose else range(self.d + 1)
        for j in order:
            _blur(self.neighbours[j], a, b)
            a, b = b, a
        out = np.empty_like(v)
        _slice(self.offset, self.weight, a, np.dtype(dtype).type(self.alpha), scale, out)
        return out

    def filter(self, values, transpose: bool = False, scale=None):
        """The filter. On one Numba thread: ``filter_steps`` (measured 12.7 vs 16.5 ms CPU at
        360x480x11, d = 5: it splats from contiguous rows). On more: one parallel region
        (``_filter_groups``), because every region ends in a barrier that, on a loaded machine,
        waits for a descheduled thread. May return an (N, C) view of a (C, N) array: index it,
        or copy with np.ascontiguousarray."""
        if numba.get_num_threads() == 1:
            return self.filter_steps(values, transpose, scale)
        return self.filter_fused(values, transpose, scale)

    def filter_fused(self, values, transpose: bool = False, scale=None):
        """``filter_steps`` in one parallel region, returning an (N, C) view of (C, N)."""
        if values.ndim != 2 or values.shape[0] != self.n:
            raise ValueError(
                f"Lattice.filter: values must have shape ({self.n}, C), got {values.shape}"
            )
        dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.float32
        v = np.ascontiguousarray(values, dtype)
        scale = np.ones(self.n, dtype) if scale is None else np.ascontiguousarray(scale, dtype)
        order = np.arange(self.d, -1, -1) if transpose else np.arange(self.d + 1)
        out = np.empty((v.shape[1], self.n), dtype)
        _filter_groups(
            self.start, self.point, self.wgt, self.offset, self.weight, self.neighbour_table,
            order, np.dtype(dtype).type(self.alpha), scale, v, out,
            min(v.shape[1], numba.get_num_threads()),
        )  # fmt: skip
        return out.T


# ------------------------------------------------------------------------- mean field
def make_filter(features, method: str, normalization: str):
    """A function v (N, C) -> the normalised message (N, C), and its transpose, for one kernel:
    ``method`` "exact", "lattice" or "cuda" (the lattice's splat/blur/slice as CUDA kernels: in
    the CPU emulator on NumPy arrays; under the ``cuda`` backend on the GPU, where ``v`` must be
    a CuPy array: ``dense_crf`` itself computes in NumPy, so it runs "cuda" only emulated)."""
    if method == "exact":
        f = np.asarray(features, np.float64)

        def raw(v, transpose=False, scale=None):  # the Gaussian matrix is symmetric
            if scale is None:
                return exact_filter(f, v)
            return scale[:, None] * exact_filter(f, scale[:, None] * v)
    elif method == "lattice":
        lattice = Lattice(features)
        raw = lattice.filter
    elif method == "cuda":  # the lattice's splat/blur/slice as CUDA kernels (cuda/crf.py)
        from minisegnet.cuda.crf import CudaLattice

        raw = CudaLattice(features).filter
    else:
        raise ValueError(f"CRF: method must be 'exact', 'lattice' or 'cuda', got {method!r}")
    n = features.shape[0]
    if normalization == "symmetric":
        norm = raw(np.ones((n, 1), np.float64 if method == "exact" else np.float32))[:, 0]
        scale = 1.0 / np.sqrt(norm.astype(np.float64) + 1e-20)
        scales = {}

        def message(v, transpose=False):
            if v.dtype not in scales:
                scales[v.dtype] = scale.astype(v.dtype)
            return raw(v, transpose, scales[v.dtype])
    elif normalization == "none":

        def message(v, transpose=False):
            return raw(v, transpose) - v
    else:
        raise ValueError(
            f"CRF: normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
        )
    return message


def mean_field_update_ref(unary, messages, weights, compatibility):
    """One mean-field update, readably: softmax(-(U + (sum_m w_m M_m) mu^T)) row by row."""
    m = sum(w * msg for w, msg in zip(weights, messages))
    return _softmax_rows(-(unary + m @ compatibility.T))


@njit(parallel=True, cache=True, fastmath=True)
def _update2(unary, m1, m2, w1, w2, mu, q):
    """mean_field_update_ref for two kernels, fused per pixel (overwrites m1) (one pass instead of six NumPy
    temporaries over (N, L): 43 ms -> 9 ms per update at 360x480x11 on 2 threads, busy)."""
    n, L = unary.shape
    for p in prange(n):  # no allocation in here: it costs more than the loop
        for b in range(L):  # m1 becomes the weighted message sum (scratch: it is not reused)
            m1[p, b] = w1 * m1[p, b] + w2 * m2[p, b]
        mx = -np.inf
        for a in range(L):
            s = unary[p, a]
            for b in range(L):
                s += mu[a, b] * m1[p, b]
            q[p, a] = -s
            mx = max(mx, -s)
        tot = 0.0
        for a in range(L):
            q[p, a] = np.exp(q[p, a] - mx)
            tot += q[p, a]
        for a in range(L):
            q[p, a] /= tot


def _softmax_rows(e):
    e = e - e.max(axis=1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


def mean_field(unary, filters, weights, compatibility, iterations):
    """Mean-field inference. unary (N, L) = -log P; filters: message functions (make_filter);
    weights: one per filter; compatibility (L, L) mu. Returns Q (N, L)."""
    q = _softmax_rows(-unary)
    mu = np.ascontiguousarray(compatibility, unary.dtype)
    for _ in range(iterations):
        messages = [f(q) for f in filters]
        if len(filters) == 2:
            t = unary.dtype.type
            q = np.empty_like(unary)
            _update2(unary, *messages, t(weights[0]), t(weights[1]), mu, q)
        else:
            q = mean_field_update_ref(unary, messages, weights, mu)
    return q


def dense_crf(image, probabilities, params: CRFParams | None = None, method: str = "lattice"):
    """Refine softmax ``probabilities`` (L, H, W) with the fully connected CRF on ``image``
    (H, W, 3). Returns the mean-field marginals Q (L, H, W) in the probabilities' dtype."""
    params = CRFParams() if params is None else params
    if not isinstance(params, CRFParams):
        raise TypeError(f"dense_crf: params must be a CRFParams, got {type(params).__name__}")
    check_inputs(image, probabilities, "dense_crf")
    L, h, w = probabilities.shape
    dtype = probabilities.dtype
    unary = -np.log(np.maximum(probabilities.reshape(L, h * w).T, 1e-8)).astype(dtype)
    feat_dtype = np.float64 if method == "exact" else np.float32
    appearance, smoothness = crf_features(image, params, feat_dtype)
    filters = [
        make_filter(appearance, method, params.normalization),
        make_filter(smoothness, method, params.normalization),
    ]
    potts = (1.0 - np.eye(L)).astype(dtype)
    q = mean_field(
        np.ascontiguousarray(unary), filters, [params.w1, params.w2], potts, params.iterations
    )
    return np.ascontiguousarray(q.T.reshape(L, h, w))
