"""The permutohedral lattice (Adams, Baek and Davis 2010): the dense CRF's Gaussian filter
(``ops/crf.py``) in O(N d^2) to build and O(N d C) per filter, for features (N, d) and values
(N, C), instead of the exact filter's O(N^2).

Each point is lifted onto the hyperplane x.1 = 0 of R^(d+1), which is tiled by simplices whose
vertices form the lattice; a point "splats" its value onto the d+1 vertices of its simplex with
barycentric weights, the lattice is blurred by [1/2, 1, 1/2] along each of the d+1 lattice
directions, and each point "slices" (reads back) from its vertices with the same weights:

    filter(v) = alpha * S^T B_d ... B_1 B_0 S v        alpha = 1 / (1 + 2^-d)

It approximates sum_j exp(-|f_i - f_j|^2 / 2) v_j (the measured error is in tests/test_crf.py
and benchmarks/results/crf.md). Each blur B_j is a symmetric matrix, so the transpose, needed
for backpropagation, is the same filter with the blurs in reverse order (``transpose=True``).
With ``scale`` (N,) the filter computes scale * K(scale * values): the CRF's symmetric
normalisation folded into the splat and the slice.

Layout (M vertices; row 0 of every lattice array is the "missing" vertex, always zero):
    offset (N, d+1) int32          each point's simplex vertices (1-based)
    weight (N, d+1) float32        its barycentric weights
    neighbours (d+1, M+1, 2) int32 each vertex' two neighbours along each lattice axis (0: none)

Two versions of the filter, equal to float rounding (tested):
* ``Lattice.filter_steps``: NumPy, the three steps written out (``np.add.at`` splat, fancy-index
  blurs, slice). The readable one.
* ``Lattice.filter``: Numba, one parallel region for the whole filter (``_filter_groups``): the
  channels are cut into one group per thread, and each thread splats, blurs and slices its own
  group, so no step waits at a barrier (on this shared machine a barrier waits for a
  descheduled thread: 8 regions per filter made a 90x120 CRF 30x slower, 3.0 s vs 0.1 s). The
  splat is a scatter in point order (Krähenbühl's loop): it reads the values once, in order, and
  adds into the small lattice, which stays in cache (13k vertices x 11 channels for a 360x480
  frame, d = 5), and needs no inverse map (the CUDA kernel's gather does, to avoid atomics:
  building it was 7 ms of the appearance lattice's 46). Measured, CPU ms, 360x480x11, 1 thread,
  busy machine: appearance filter 12.9 (gather) -> 11.3 (scatter), smoothness 6.1 -> 6.8 (its
  22k-vertex lattice is less cache-friendly); build 46 -> 39 and 13.4 -> 11.0.

The build (``build_lattice``) has three phases: each point's simplex (independent per point:
parallel; ``_simplices``), numbering the distinct vertices (a hash table, sequential:
``_insert``), and the vertices' neighbours (parallel over vertices: ``_neighbours``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = ["Lattice", "build_lattice", "splat_gather"]


# ------------------------------------------------------------------------------ the build
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
    vertices than N (d+1) (13k of 1.04M at 360x480, d = 5), and a table that fits the cache
    halves the build (measured 25 -> 12 ms insert, 38 -> 17 ms neighbours; busy machine).
    Comparing each corner with the previous point's first (neighbouring pixels mostly share
    their simplex) was slower: 13 -> 20 ms CPU, the branch mispredicts."""
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


def build_lattice(features):
    """(offset, weight, neighbours) of the lattice for float features (N, d), d >= 1 (the
    layout in the module docstring; following Krähenbühl's permutohedral.cpp)."""
    f = np.ascontiguousarray(features, np.float32)
    if f.ndim != 2 or f.shape[1] < 1:
        raise ValueError(f"Lattice: features must have shape (N, d) with d >= 1, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("Lattice: features must be finite")
    keys, weight = _simplices(f)
    offset, vertices, table = _insert(keys)
    return offset, weight, _neighbours(vertices, table)


@njit(cache=True)
def splat_gather(offset, weight, m):
    """The splat as a gather, for the CUDA kernel: for each vertex, the (point, weight) pairs
    that splat onto it, in CSR form (start (M+2,) int64, point, weight). Lets every thread
    write only its own vertex: no atomics."""
    n, k = offset.shape
    count = np.zeros(m + 2, np.int64)
    for p in range(n):
        for r in range(k):
            count[offset[p, r] + 1] += 1
    for v in range(1, m + 2):
        count[v] += count[v - 1]
    point = np.empty(n * k, np.int32)
    wgt = np.empty(n * k, np.float32)
    fill = count[:-1].copy()
    for p in range(n):
        for r in range(k):
            v = offset[p, r]
            point[fill[v]] = p
            wgt[fill[v]] = weight[p, r]
            fill[v] += 1
    return count, point, wgt


# ----------------------------------------------------------------------------- the filter
@njit(cache=True, fastmath=True)
def _pipeline(offset, weight, neighbours, order, alpha, scale, values, out):
    """splat -> blurs (in ``order``) -> slice on one thread, values (N, cg) into out (cg, N)."""
    n, k1 = offset.shape
    cg = values.shape[1]
    m1 = neighbours.shape[1]
    a = np.zeros((m1, cg), values.dtype)
    b = np.empty((m1, cg), values.dtype)
    acc = np.empty(cg, values.dtype)  # a local accumulator: LLVM cannot see that out and
    for p in range(n):  # splat, a scatter   # values do not alias (2.8x slower without)
        for k in range(cg):
            acc[k] = scale[p] * values[p, k]
        for r in range(k1):
            o = offset[p, r]
            w = weight[p, r]
            for k in range(cg):
                a[o, k] += w * acc[k]
    for j in order:  # blur along each lattice axis; vertex 0 (missing) stays zero
        nb = neighbours[j]
        for k in range(cg):
            b[0, k] = 0.0
        for v in range(1, m1):
            n1 = nb[v, 0]
            n2 = nb[v, 1]
            for k in range(cg):
                b[v, k] = a[v, k] + 0.5 * (a[n1, k] + a[n2, k])
        a, b = b, a
    for p in range(n):  # slice
        for k in range(cg):
            acc[k] = 0.0
        for r in range(k1):
            o = offset[p, r]
            w = weight[p, r]
            for k in range(cg):
                acc[k] += w * a[o, k]
        s = alpha * scale[p]
        for k in range(cg):
            out[k, p] = s * acc[k]


@njit(parallel=True, cache=True)
def _filter_groups(offset, weight, neighbours, order, alpha, scale, values, out, groups):
    """The filter in ONE parallel region: channel group g (one per thread) runs the whole
    ``_pipeline``. out is (C, N), so the threads write disjoint rows (no false sharing)."""
    c = values.shape[1]
    for g in prange(groups):
        c0 = g * c // groups
        c1 = (g + 1) * c // groups
        # views, not c0 + k indices: an index of unknown sign costs a wraparound check per
        # element and blocks vectorisation (the splat ran 4x slower: 21 vs 5.5 ms)
        _pipeline(offset, weight, neighbours, order, alpha, scale, values[:, c0:c1], out[c0:c1])


class Lattice:
    """The permutohedral lattice for features (N, d): ``filter(values (N, C))`` approximates
    ``exact_filter(features, values)`` (ops/crf.py); ``filter(values, transpose=True)``
    applies the transposed matrix (blurs in reverse order), the backward of ``filter``; with
    ``scale`` (N,) it computes scale * K(scale * values)."""

    def __init__(self, features):
        self.offset, self.weight, self.neighbour_table = build_lattice(features)
        self.n, k = self.offset.shape
        self.d = k - 1
        self.m = self.neighbour_table.shape[1] - 1
        self.neighbours = list(self.neighbour_table)  # (M+1, 2) per axis
        self.alpha = 1.0 / (1.0 + 2.0 ** (-self.d))

    def _prepare(self, values, transpose, scale):
        if values.ndim != 2 or values.shape[0] != self.n:
            raise ValueError(
                f"Lattice.filter: values must have shape ({self.n}, C), got {values.shape}"
            )
        dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.float32
        v = np.ascontiguousarray(values, dtype)
        scale = np.ones(self.n, dtype) if scale is None else np.ascontiguousarray(scale, dtype)
        order = np.arange(self.d, -1, -1) if transpose else np.arange(self.d + 1)
        return v, scale, order

    def filter_steps(self, values, transpose: bool = False, scale=None):
        """The filter as its three steps in NumPy: the readable version (and the reference
        for ``filter`` and the CUDA kernels)."""
        v, scale, order = self._prepare(values, transpose, scale)
        lattice = np.zeros((self.m + 1, v.shape[1]), v.dtype)
        splat = (self.weight[:, :, None] * (scale[:, None] * v)[:, None, :]).astype(v.dtype)
        np.add.at(lattice, self.offset.ravel(), splat.reshape(-1, v.shape[1]))  # S v
        for j in order:  # B_j: every vertex plus half of each neighbour along axis j
            nb = self.neighbours[j]
            lattice = lattice + 0.5 * (lattice[nb[:, 0]] + lattice[nb[:, 1]])
            lattice[0] = 0.0  # the missing vertex
        sliced = np.einsum("nr,nrc->nc", self.weight, lattice[self.offset]).astype(v.dtype)
        return v.dtype.type(self.alpha) * scale[:, None] * sliced

    def filter(self, values, transpose: bool = False, scale=None):
        """The filter in one parallel region (``_filter_groups``). Returns an (N, C) view of a
        (C, N) array: index it, or copy with np.ascontiguousarray."""
        v, scale, order = self._prepare(values, transpose, scale)
        out = np.empty((v.shape[1], self.n), v.dtype)
        groups = min(v.shape[1], numba.get_num_threads())
        alpha = v.dtype.type(self.alpha)
        if groups == 1:  # no parallel region at all
            _pipeline(self.offset, self.weight, self.neighbour_table, order, alpha, scale, v, out)
        else:
            _filter_groups(self.offset, self.weight, self.neighbour_table, order, alpha, scale,
                           v, out, groups)  # fmt: skip
        return out.T
