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
* ``Lattice`` (``ops/crf_lattice.py``): the permutohedral lattice of Adams, Baek and Davis
  (2010), O(N d^2) to build and O(N d L) per filter; it approximates the Gaussian (the
  measured error against ``exact_filter`` is in tests/test_crf.py and benchmarks/results/
  crf.md). ``method="cuda"`` runs the lattice's filter as CUDA kernels (``cuda/crf.py``).

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
mean field agrees with pydensecrf2's labels on >99.9% of pixels. Speed, 360x480 frame, 11
classes, 10 iterations: 0.93x pydensecrf2's time on 1 Numba thread, 0.80x on 2 (327 and 279 vs
351 ms, load 0.4); at load 7, 0.96x on 1 thread but 1.46x on 2 (a parallel region's barrier
waits for a descheduled thread). Per 1-thread run, CPU: lattice builds 52 + 11 ms, 10 x (appearance filter
11 + smoothness filter 7 + update 5 ms); the update is fused and Potts-specialised
(``_update2``).

Shapes: image (H, W, 3) (uint8 or float; colour in 0..255 units), probabilities (L, H, W)
float32/float64 summing to 1 over L. Features (N, d), values (N, C).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from minisegnet import backend
from minisegnet.ops.crf_lattice import Lattice, build_lattice

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


@dataclass
class CRFParams:
    """The CRF's parameters. Defaults: the values of pydensecrf's examples (Krähenbühl's
    inference.cpp: bilateral w1=10, theta_alpha=80, theta_beta=13; Gaussian w2=3, theta_gamma=3).
    ``iterations`` mean-field steps; ``normalization`` in NORMALIZATIONS (module docstring)."""

    w1: float = 10.0  # appearance kernel: weight,
    theta_alpha: float = 80.0  # position width (px),
    theta_beta: float = 13.0  # colour width (0..255 units)
    w2: float = 3.0  # smoothness kernel: weight,
    theta_gamma: float = 3.0  # position width (px)
    iterations: int = 10
    normalization: str = "symmetric"

    def __post_init__(self):
        for name, positive in _NUMBERS:
            value = getattr(self, name)
            what = f"{name} (a kernel width)" if positive else name
            if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(
                value, bool
            ):
                raise TypeError(f"CRF: {what} must be a number, got {value!r}")
            if not np.isfinite(value) or value < 0 or (positive and value == 0):
                raise ValueError(
                    f"CRF: {what} must be a finite number {'>' if positive else '>='} 0, "
                    f"got {value!r}"
                )
            setattr(self, name, float(value))
        it = self.iterations
        if not isinstance(it, (int, np.integer)) or isinstance(it, bool) or it < 0:
            raise ValueError(f"CRF: iterations must be an int >= 0, got {it!r}")
        self.iterations = int(it)
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"CRF: normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}"
            )


# (field, must be > 0): the weights may be 0 (the kernel switched off), the widths may not
_NUMBERS = (("w1", False), ("w2", False), ("theta_alpha", True), ("theta_beta", True),
            ("theta_gamma", True))  # fmt: skip


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


# ------------------------------------------------------------------------- mean field
class ExactGaussian:
    """``exact_filter`` with the lattice's interface: ``filter(v, transpose, scale)`` is
    scale * K(scale * v); K is symmetric, so ``transpose`` changes nothing."""

    def __init__(self, features):
        self.features = np.asarray(features, np.float64)

    def filter(self, v, transpose=False, scale=None):
        if scale is None:
            return exact_filter(self.features, v)
        return scale[:, None] * exact_filter(self.features, scale[:, None] * v)


# method -> the filter's class: the CUDA one is imported only when asked for
FILTERS = {
    "exact": ExactGaussian,
    "lattice": Lattice,
    "cuda": backend.lazy("minisegnet.cuda.crf", "CudaLattice"),
}


def make_filter(features, method: str, normalization: str):
    """A function v (N, C) -> the normalised message (N, C), and its transpose, for one kernel:
    ``method`` "exact", "lattice" or "cuda" (the lattice's splat/blur/slice as CUDA kernels: in
    the CPU emulator on NumPy arrays; under the ``cuda`` backend on the GPU, where ``v`` must be
    a CuPy array: ``dense_crf`` itself computes in NumPy, so it runs "cuda" only emulated)."""
    if method not in FILTERS:
        raise ValueError(f"CRF: method must be 'exact', 'lattice' or 'cuda', got {method!r}")
    raw = FILTERS[method](features).filter
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


@njit(cache=True, fastmath=True)
def _exp_nonpositive(x, bits):
    """x[:] = exp(x) for float32 x <= 0, vectorised: Cephes' expf, 2^n times a polynomial in
    r = x - n ln2 (|r| <= ln2/2; relative error < 2e-7; x clamped at -87). 2^n is written as
    exponent bits into ``bits`` (int32) and read back through a float32 view. Numba's np.exp
    is a scalar libm call here (no SVML): 4.4 ms vs 0.7 ms for 1.9M values (1 thread)."""
    f = np.float32
    for j in range(x.size):
        v = max(x[j], f(-87.0))
        n = np.floor(v * f(1.44269504) + f(0.5))
        r = v - n * f(0.693359375) + n * f(2.12194440e-4)
        p = f(1.9875691500e-4) * r + f(1.3981999507e-3)
        p = (((p * r + f(8.3334519073e-3)) * r + f(4.1665795894e-2)) * r + f(1.6666665459e-1)) * r
        x[j] = (p + f(0.5)) * r * r + r + f(1.0)
        bits[j] = (np.int32(n) + np.int32(127)) << np.int32(23)
    two_n = bits.view(np.float32)
    for j in range(x.size):
        x[j] *= two_n[j]


@njit(parallel=True, cache=True, fastmath=True)
def _update2(unary, m1, m2, w1, w2, mu, q, potts=False):
    """mean_field_update_ref for two kernels, fused: one pass instead of six NumPy
    temporaries over (N, L) (43 ms -> 9 ms per update at 360x480x11, 2 threads, busy).
    ``potts``: mu = 1 - I, whose sum_b mu[a, b] m_b = sum_b m_b - m_a; that sum is the same for
    every label a and softmax ignores it, so E_a = U_a - m_a: O(L), not O(L^2), as Krähenbühl's
    code does. Pixels go in chunks of 256 through three flat loops (energies minus their max,
    exp, normalise), so that the exp loop vectorises; float32 uses ``_exp_nonpositive`` (the
    float64 path keeps np.exp: it is the reference precision). Measured per update, CPU time,
    360x480x11, 1 thread, busy machine: 18 ms (per pixel, general mu, np.exp) -> 10 ms (Potts)
    -> 4 ms (vectorised exp)."""
    n, L = unary.shape
    fast_exp = unary.itemsize == 4  # float32
    chunk = 256
    for c in prange((n + chunk - 1) // chunk):
        p0 = c * chunk
        size = min(n, p0 + chunk) - p0
        e = np.empty(size * L, unary.dtype)  # -E - max over the labels, then its exp
        m = np.empty(L, unary.dtype)  # one pixel's weighted message sum
        for i in range(size):
            p = p0 + i
            for b in range(L):
                m[b] = w1 * m1[p, b] + w2 * m2[p, b]
            for a in range(L):
                if potts:
                    s = m[a] - unary[p, a]
                else:
                    s = -unary[p, a]
                    for b in range(L):
                        s -= mu[a, b] * m[b]
                e[i * L + a] = s
            mx = e[i * L]
            for a in range(1, L):
                mx = max(mx, e[i * L + a])
            for a in range(L):
                e[i * L + a] -= mx
        if fast_exp:
            _exp_nonpositive(e, np.empty(size * L, np.int32))
        else:
            for j in range(size * L):
                e[j] = np.exp(e[j])
        for i in range(size):
            tot = 0.0
            for a in range(L):
                tot += e[i * L + a]
            inv = 1.0 / tot
            for a in range(L):
                q[p0 + i, a] = e[i * L + a] * inv


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
    potts = bool(np.array_equal(mu, 1.0 - np.eye(len(mu))))
    for _ in range(iterations):
        messages = [f(q) for f in filters]
        if len(filters) == 2:
            t = unary.dtype.type
            q = np.empty_like(unary)
            _update2(unary, *messages, t(weights[0]), t(weights[1]), mu, q, potts)
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
