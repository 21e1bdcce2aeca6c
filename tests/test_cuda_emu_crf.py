"""The dense CRF's lattice filter as CUDA kernels (minisegnet/cuda/crf.py) on cuda-emu, against
the Numba lattice (ops/crf.py, itself checked against the exact filter in tests/test_crf.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_cuda_common import FLOATS, needs_emu

pytestmark = needs_emu


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(1, 120),
    d=st.integers(1, 5),
    c=st.integers(1, 4),
    transpose=st.booleans(),
    seed=st.integers(0, 10**6),
)
@pytest.mark.parametrize("dtype", FLOATS)
def test_cuda_lattice_matches_numba(dtype, n, d, c, transpose, seed):
    from minisegnet.cuda.crf import CudaLattice
    from minisegnet.ops.crf import Lattice

    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, d)) * 2
    v = rng.random((n, c)).astype(dtype)
    scale = (rng.random(n) + 0.5).astype(dtype)
    want = Lattice(f).filter_steps(v, transpose, scale)
    got = CudaLattice(f).filter(v, transpose, scale)
    tol = 1e-5 if dtype == np.float32 else 1e-6  # weights are float32 in both
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_bad_values():
    from minisegnet.cuda.crf import CudaLattice

    lat = CudaLattice(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="values must have shape"):
        lat.filter(np.zeros((4, 1), np.float32))
    with pytest.raises(TypeError, match="values must have dtype"):
        lat.filter(np.zeros((5, 1), np.int32))


def test_dense_crf_with_the_cuda_filter():
    from minisegnet.ops import crf
    from tests.test_crf import scene

    img, p, _ = scene(14, 17, 3, seed=5)
    params = crf.CRFParams(theta_alpha=6.0, iterations=3)
    want = crf.dense_crf(img, p, params, method="lattice")
    got = crf.dense_crf(img, p, params, method="cuda")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
