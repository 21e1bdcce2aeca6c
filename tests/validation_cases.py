"""Random calls of the functional API, for the validation fuzz test (``test_validation_fuzz.py``).

A *case* is one call of one op of ``minisegnet.functional`` with random shapes, dtypes and
geometries: mostly valid, sometimes not (a window larger than the input, a negative padding, an
index out of its window, a class weight below zero, a wrong dtype, an empty batch, ...). The
contract every case checks:

    on the reference (numpy) backend the call returns a result, or raises a ValueError or a
    TypeError whose message names the op (never another exception, never a crash);
    on another backend the same call gives the same outcome: the same error, or the same
    output and the same gradients (float32 within 1e-4, float64 within 1e-9).

Run as a program it checks ``--examples`` cases on ``--backend`` and exits non-zero on the first
broken contract (hypothesis prints the shrunk call). The test runs it in a subprocess, so a
kernel that crashes the interpreter (a segfault from an out-of-bounds access) is a failed test,
not a lost test run::

    python -m tests.validation_cases --backend numba --examples 600 [--seed 1]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet.tensor import Tensor

FLOATS = (np.float32, np.float64)


@dataclass
class Case:
    """One call: ``op`` (the name its errors must carry), the arrays it takes (inputs with a
    gradient first), and ``call(tensors) -> output`` building the rest of the arguments."""

    op: str
    call: object
    arrays: dict = field(default_factory=dict)
    grad: tuple = ()  # names in ``arrays`` that get requires_grad (when float)
    extra: dict = field(default_factory=dict)  # shown in the falsifying example

    def __repr__(self) -> str:
        shapes = {k: (v.shape, str(v.dtype)) for k, v in self.arrays.items()}
        return f"Case({self.op}, arrays={shapes}, {self.extra})"


# ----------------------------------------------------------------------------- drawing helpers
def _values(rng, shape, dtype):
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 5, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _rarely(draw, percent):
    """True in about ``percent`` % of the cases (False is the simple, shrunk-to choice)."""
    return draw(st.sampled_from([False] * (100 - percent) + [True] * percent))


def _choice(draw, valid, invalid=(), percent=5):
    """One of ``valid``, or in about ``percent`` % of the cases one of ``invalid``."""
    if invalid and _rarely(draw, percent):
        return draw(st.sampled_from(list(invalid)))
    return draw(st.sampled_from(list(valid)))


def _dtype(draw, odd=5):
    """float32 or float64 mostly; now and then a dtype the op must refuse (or accept)."""
    if _rarely(draw, odd):
        return draw(st.sampled_from([np.float16, np.int32, np.int64, np.uint8, np.bool_]))
    return draw(st.sampled_from(FLOATS))


def _size(draw, low=1, high=6, empty=5):
    """A small axis length; 0 in about ``empty`` % of the cases."""
    if _rarely(draw, empty):
        return 0
    return draw(st.integers(low, high))


def _pair_or_int(draw, low, high):
    """An int, a pair, or (rarely) an odd value: a bool, a float, a negative, a triple."""
    kind = draw(st.sampled_from(["int"] * 48 + ["pair"] * 49 + ["odd"] * 3))
    if kind == "odd":
        return draw(st.sampled_from([True, 1.5, -1, (1, 2, 3), "2", None]))
    if kind == "int":
        value = draw(st.integers(low, high))
        return np.int64(value) if draw(st.booleans()) else value
    return (draw(st.integers(low, high)), draw(st.integers(low, high)))


def _nchw(draw, rng, dtype=None, n_high=2, c_high=4, hw_high=7):
    shape = (
        _size(draw, 1, n_high, empty=8),
        _size(draw, 1, c_high, empty=2),
        _size(draw, 1, hw_high, empty=2),
        _size(draw, 1, hw_high, empty=2),
    )
    if _rarely(draw, 3):  # a wrong rank
        shape = shape[: draw(st.integers(1, 3))]
    return _values(rng, shape, _dtype(draw) if dtype is None else dtype)


# ----------------------------------------------------------------------------- the ops
def _spell(draw, pair):
    """A valid (h, w) pair as the user may write it: an int (a NumPy one too) when both
    are equal, else the pair; now and then replaced by an invalid value."""
    if _rarely(draw, 3):
        return draw(st.sampled_from([True, 1.5, -1, (1, 2, 3), "2", None]))
    if pair[0] == pair[1] and draw(st.booleans()):
        return np.int64(pair[0]) if draw(st.booleans()) else pair[0]
    return tuple(pair)


def _conv_geometry(draw, plane):
    """(kernel, stride, padding, dilation) pairs whose dilated kernel fits the padded plane
    (most of the time; else anything small)."""
    axes = []
    for size in plane:
        padding = draw(st.integers(0, 2))
        dilation = draw(st.integers(1, 3))
        room = (size + 2 * padding - 1) // dilation + 1  # the largest kernel that fits
        kernel = draw(st.integers(1, max(1, min(4, room)) if not _rarely(draw, 10) else 4))
        axes.append((kernel, draw(st.integers(1, 3)), padding, dilation))
    return tuple(zip(*axes))


def _groups(draw, channels):
    divisors = [g for g in (1, 2, 3) if channels % g == 0] or [1]
    return _choice(draw, divisors, [0, -1, 2, 3])


def conv2d_case(draw, rng):
    dtype = _dtype(draw)
    x = _nchw(draw, rng, dtype)
    c = x.shape[1] if x.ndim == 4 else 1
    groups = _groups(draw, c)
    g = max(groups, 1)
    out = draw(st.integers(1, 4)) * (g if not _rarely(draw, 5) else 1)
    cg = c // g if c % g == 0 and not _rarely(draw, 5) else max(1, c)
    kernel, stride, padding, dilation = _conv_geometry(draw, x.shape[2:] if x.ndim == 4 else (3, 3))
    w_dtype = dtype if not _rarely(draw, 5) else np.float64
    arrays = {"x": x, "w": _values(rng, (out, cg) + kernel, w_dtype)}
    if draw(st.booleans()):
        arrays["b"] = _values(rng, (out if not _rarely(draw, 5) else out + 1,), dtype)
    geometry = dict(stride=_spell(draw, stride), padding=_spell(draw, padding),
                    dilation=_spell(draw, dilation), groups=groups)  # fmt: skip

    def call(t):
        return F.conv2d(t["x"], t["w"], t.get("b"), **geometry)

    return Case("conv2d", call, arrays, ("x", "w", "b"), geometry)


def conv_transpose2d_case(draw, rng):
    dtype = _dtype(draw)
    x = _nchw(draw, rng, dtype)
    c = x.shape[1] if x.ndim == 4 else 1
    groups = _groups(draw, c)
    out_per_group = draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    arrays = {"x": x, "w": _values(rng, (c, out_per_group) + kernel, dtype)}
    if draw(st.booleans()):
        arrays["b"] = _values(rng, (out_per_group * max(groups, 1),), dtype)
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    if _rarely(draw, 10):
        output_padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    else:
        output_padding = tuple(
            draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)
        )
    geometry = dict(stride=_spell(draw, stride), padding=_spell(draw, padding),
                    output_padding=_spell(draw, output_padding), groups=groups,
                    dilation=_spell(draw, dilation))  # fmt: skip

    def call(t):
        return F.conv_transpose2d(t["x"], t["w"], t.get("b"), **geometry)

    return Case("conv_transpose2d", call, arrays, ("x", "w", "b"), geometry)


def _pool_geometry(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if _rarely(draw, 10):
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))  # perhaps too much
    else:
        padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    stride = None if draw(st.booleans()) else _spell(draw, (draw(st.integers(1, 3)),) * 2)
    return dict(kernel_size=_spell(draw, kernel), stride=stride, padding=_spell(draw, padding))


def _window_pool_case(draw, rng, op: str, flag: str):
    """``F.<op>`` on a random input with a drawn geometry, ceil_mode and boolean ``flag``."""
    x = _nchw(draw, rng)
    geometry = _pool_geometry(draw)
    geometry.update(ceil_mode=draw(st.booleans()), **{flag: draw(st.booleans())})

    def call(t):
        return getattr(F, op)(t["x"], **geometry)

    return Case(op, call, {"x": x}, ("x",), geometry)


def max_pool2d_case(draw, rng):
    return _window_pool_case(draw, rng, "max_pool2d", "return_indices")


def max_unpool2d_case(draw, rng):
    """Pool a random input (its geometry drawn valid most of the time), then unpool with its
    switches: as returned, or edited (a value out of the window, another dtype, a window pointing
    into the padding) the way a user holding ``indices.data`` could."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    x = _values(rng, (_size(draw, 1, 2, 10), draw(st.integers(1, 3)), draw(st.integers(k[0], 8)),
                      draw(st.integers(k[1], 8))), draw(st.sampled_from(FLOATS)))  # fmt: skip
    geometry = dict(
        kernel_size=k,
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=(draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2))),
    )
    ceil_mode = draw(st.booleans())
    edit = _choice(draw, ["none"], ["value", "value", "dtype", "flat", "size", "geometry"], 40)
    value = draw(st.integers(0, 255))
    where = draw(st.integers(0, 10**6))
    to_dtype = draw(st.sampled_from([np.int8, np.int32, np.int64, np.float32, np.uint16]))
    pass_size = _choice(draw, ["none", "input"], ["other"], 10)
    other_size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    extra = dict(geometry, ceil_mode=ceil_mode, edit=edit, value=value, pass_size=pass_size)

    def call(t):
        # Pool on the reference backend's arrays as they are: the switches are part of the case.
        y, idx = F.max_pool2d(t["x"].detach(), ceil_mode=ceil_mode, return_indices=True,
                              **geometry)  # fmt: skip
        data = idx.data.copy()
        unpool_geometry = dict(geometry)
        if edit == "value" and data.size:
            data.reshape(-1)[where % data.size] = value
        elif edit == "dtype":
            data = data.astype(to_dtype)
        if edit == "flat":
            indices = F.to_flat_indices(idx).data
            if indices.size and value % 2:
                indices.reshape(-1)[where % indices.size] = value - 128
        else:
            indices = F.PoolIndices(data, idx.kernel, idx.stride, idx.padding, idx.in_size)
        if edit == "geometry":
            unpool_geometry["padding"] = (0, 0)
        size = {"none": None, "input": t["x"].shape[2:], "other": other_size}[pass_size]
        if edit == "size":
            size = other_size
        source = Tensor(y.data.copy(), requires_grad=True)
        t["pooled"] = source  # the gradient compared is this one
        return F.max_unpool2d(source, indices, output_size=size, **unpool_geometry)

    return Case("max_unpool2d", call, {"x": x}, (), extra)


def avg_pool2d_case(draw, rng):
    return _window_pool_case(draw, rng, "avg_pool2d", "count_include_pad")


def adaptive_avg_pool2d_case(draw, rng):
    x = _nchw(draw, rng)
    kind = _choice(draw, ["int", "pair"], ["odd"], 10)
    if kind == "int":
        size = draw(st.integers(1, 6))
    elif kind == "pair":
        size = (draw(st.one_of(st.none(), st.integers(1, 6))), draw(st.integers(1, 6)))
    else:
        size = draw(st.sampled_from([0, -1, (2, 0), 1.5, "3", (1, 2, 3)]))

    def call(t):
        return F.adaptive_avg_pool2d(t["x"], size)

    return Case("adaptive_avg_pool2d", call, {"x": x}, ("x",), {"output_size": size})


def interpolate_case(draw, rng):
    mode = _choice(draw, ["bilinear", "nearest"], ["bicubic"])
    dtype = _dtype(draw, odd=20 if mode == "nearest" else 5)
    x = _nchw(draw, rng, dtype)
    kind = _choice(draw, ["size", "scale"], ["both", "bad scale"], 10)
    size = scale = None
    if kind == "size":
        size = _pair_or_int(draw, 1, 9)
    elif kind == "scale":
        one = st.sampled_from([0.5, 1, 2, 3, 1.5])
        scale = draw(st.one_of(one, st.tuples(one, st.sampled_from([1, 2.5]))))
    elif kind == "both":
        size, scale = 4, 2
    else:
        scale = draw(st.sampled_from([0, -1.0, float("nan"), float("inf")]))
    align = (
        None if mode != "bilinear" and not _rarely(draw, 5) else _choice(draw, [None, True, False])
    )
    extra = dict(size=size, scale_factor=scale, mode=mode, align_corners=align)

    def call(t):
        return F.interpolate(t["x"], **extra)

    return Case("interpolate", call, {"x": x}, ("x",), extra)


def batch_norm_case(draw, rng):
    dtype = _dtype(draw)
    ndim = _choice(draw, [2, 3, 4, 4], [1, 5])
    shape = tuple(_size(draw, 1, 3, empty=5) for _ in range(ndim))
    x = _values(rng, shape, dtype)
    c = shape[1] if ndim > 1 else 1
    if _rarely(draw, 5):
        c += 1
    arrays = {"x": x}
    if draw(st.booleans()):
        arrays["weight"] = _values(rng, (c,), dtype)
        arrays["bias"] = _values(rng, (c,), dtype)
    training = draw(st.booleans())
    have_stats = not _rarely(draw, 10)
    momentum = _choice(draw, [0.1, 0.0, 1.0, 0.5], [-0.1, 2.0])
    eps = _choice(draw, [1e-5, 1e-3], [0.0, -1.0])
    mean0 = rng.standard_normal(c).astype(np.float32)
    var0 = rng.uniform(0.5, 2, c).astype(np.float32)
    extra = dict(training=training, stats=have_stats, momentum=momentum, eps=eps)

    def call(t):
        stats = (mean0.copy(), var0.copy()) if have_stats else (None, None)
        y = F.batch_norm(t["x"], *stats, t.get("weight"), t.get("bias"), training=training,
                         momentum=momentum, eps=eps)  # fmt: skip
        if have_stats:  # the running statistics are outputs too (updated in place)
            t["running_mean"] = Tensor.from_array(stats[0])
            t["running_var"] = Tensor.from_array(stats[1])
        return y

    return Case("batch_norm", call, arrays, ("x", "weight", "bias"), extra)


def local_response_norm_case(draw, rng):
    x = _nchw(draw, rng)
    if _rarely(draw, 10):  # (N, C, L) is allowed too
        x = x.reshape(x.shape[:2] + (x.shape[2] * x.shape[3],)) if x.ndim == 4 else x
    extra = dict(
        size=_choice(draw, [1, 2, 3, 5, 6], [0, -1, 2.5]),
        alpha=draw(st.sampled_from([1e-4, 1.0, 0.0])),
        beta=draw(st.sampled_from([0.75, 0.5, 1.0])),
        k=draw(st.sampled_from([1.0, 2.0, 0.5])),
    )

    def call(t):
        return F.local_response_norm(t["x"], **extra)

    return Case("local_response_norm", call, {"x": x}, ("x",), extra)


def dropout_case(draw, rng):
    op = draw(st.sampled_from(["dropout", "dropout2d"]))
    x = _nchw(draw, rng)
    extra = dict(
        p=_choice(draw, [0.0, 0.3, 0.5, 0.9, 1.0], [-0.1, 1.5]),
        training=draw(st.booleans()),
        seed=_choice(draw, [0, 1, 12345, 2**63 - 1, -1], [1.5, "1"]),
    )

    def call(t):
        return getattr(F, op)(t["x"], **extra)

    return Case(op, call, {"x": x}, ("x",), extra)


def softmax_case(draw, rng):
    op = draw(st.sampled_from(["softmax", "log_softmax"]))
    ndim = draw(st.integers(1, 4))
    x = _values(rng, tuple(_size(draw, 1, 4, 5) for _ in range(ndim)), _dtype(draw))
    dim = _choice(draw, range(-ndim, ndim), [-ndim - 1, ndim, None, 1.0], 10)

    def call(t):
        return getattr(F, op)(t["x"], dim=dim)

    return Case(op, call, {"x": x}, ("x",), {"dim": dim})


def cross_entropy_case(draw, rng):
    dtype = _dtype(draw)
    spatial = draw(st.booleans())
    n, c = _size(draw, 1, 3, 10), _size(draw, 1, 4, 3)
    shape = (n, c, _size(draw, 1, 4, 3), _size(draw, 1, 4, 3)) if spatial else (n, c)
    x = _values(rng, shape, dtype)
    ignore = _choice(draw, [255, -100, 0, np.int64(3)], [2.5])
    t_shape = (shape[0],) + shape[2:]
    if _rarely(draw, 5):
        t_shape = t_shape + (1,)
    target = rng.integers(0, max(c, 1), size=t_shape)
    target[rng.random(t_shape) < 0.2] = ignore
    if _rarely(draw, 5):
        target.reshape(-1)[:1] = c  # a label out of range
    target = target.astype(_choice(draw, [np.int64, np.uint8], [np.float32]))
    if target.dtype == np.uint8 and ignore < 0:
        ignore = 255
    arrays = {"x": x, "target": target}
    if draw(st.booleans()):
        weight = rng.uniform(0, 2, c)
        if _rarely(draw, 30):
            weight[draw(st.integers(0, max(c - 1, 0))) if c else 0 :][:1] = draw(
                st.sampled_from([-1.0, float("nan"), float("inf"), 0.0])
            )
        if _rarely(draw, 5):
            weight = np.append(weight, 1.0)
        arrays["weight"] = weight
    reduction = _choice(draw, ["mean", "sum", "none"], ["avg"])
    extra = dict(ignore_index=ignore, reduction=reduction)

    def call(t):
        weight = t.get("weight")
        return F.cross_entropy(t["x"], t["target"].data, weight=None if weight is None else
                               weight.data, **extra)  # fmt: skip

    return Case("cross_entropy", call, arrays, ("x",), extra)


def elementwise_case(draw, rng):
    op = draw(st.sampled_from(["relu", "sigmoid", "tanh"]))
    x = _values(rng, tuple(_size(draw, 1, 4, 5) for _ in range(draw(st.integers(1, 4)))),
                _dtype(draw))  # fmt: skip

    def call(t):
        return getattr(F, op)(t["x"])

    return Case(op, call, {"x": x}, ("x",))


def pad_case(draw, rng):
    ndim = draw(st.integers(1, 4))
    x = _values(rng, tuple(_size(draw, 1, 4, 5) for _ in range(ndim)), _dtype(draw))
    widths = tuple(draw(st.integers(0, 2)) for _ in range(2 * draw(st.integers(0, ndim))))
    pad = _choice(draw, [widths, list(widths)], [widths + (1,), (-1, 1), (1.5, 1), "ab", 3])
    value = _choice(draw, [0.0, 1, -2.5, np.float32(3)], [None, "0"])

    def call(t):
        return F.pad(t["x"], pad, value=value)

    return Case("pad", call, {"x": x}, ("x",), {"pad": pad, "value": value})


BUILDERS = {
    "conv2d": conv2d_case,
    "conv_transpose2d": conv_transpose2d_case,
    "max_pool2d": max_pool2d_case,
    "max_unpool2d": max_unpool2d_case,
    "avg_pool2d": avg_pool2d_case,
    "adaptive_avg_pool2d": adaptive_avg_pool2d_case,
    "interpolate": interpolate_case,
    "batch_norm": batch_norm_case,
    "local_response_norm": local_response_norm_case,
    "dropout": dropout_case,
    "softmax": softmax_case,
    "cross_entropy": cross_entropy_case,
    "elementwise": elementwise_case,
    "pad": pad_case,
}


@st.composite
def cases(draw, ops=tuple(BUILDERS)):
    builder = BUILDERS[draw(st.sampled_from(sorted(ops)))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return builder(draw, rng)


# ----------------------------------------------------------------------------- running a case
@dataclass
class Outcome:
    error: BaseException | None = None
    arrays: dict = field(default_factory=dict)  # output(s) and gradients, as NumPy arrays


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


def run(case: Case, backend: str) -> Outcome:
    """Call the case on ``backend``; forward, then backward with a fixed upstream gradient."""
    with ms.backend.use(backend):
        xp = ms.backend.current().xp
        tensors = {}
        for name, array in case.arrays.items():
            grad = name in case.grad and array.dtype in FLOATS
            tensors[name] = Tensor(xp.asarray(array), requires_grad=grad, dtype=array.dtype)
        try:
            out = case.call(tensors)
        except (ValueError, TypeError) as error:
            return Outcome(error=error)
        outputs = out if isinstance(out, tuple) else (out,)
        result = Outcome()
        for i, o in enumerate(outputs):
            result.arrays[f"out{i}"] = _host(o.data)
        first = outputs[0]
        if first.requires_grad and first.dtype in FLOATS:
            g = np.random.default_rng(0).standard_normal(first.shape).astype(first.dtype)
            first.backward(xp.asarray(g))
        for name, t in tensors.items():
            if t.requires_grad and t.creator is None:
                result.arrays[f"grad_{name}"] = None if t.grad is None else _host(t.grad)
            elif name in ("running_mean", "running_var"):
                result.arrays[name] = _host(t.data)
        return result


def check_reference(case: Case, outcome: Outcome) -> None:
    """The reference either computes or refuses with a ValueError/TypeError naming the op."""
    if outcome.error is not None:
        message = str(outcome.error)
        assert case.op in message, (
            f"{case!r}: the {type(outcome.error).__name__} does not name {case.op!r}: {message}"
        )


def check_same(case: Case, reference: Outcome, other: Outcome, backend: str) -> None:
    if reference.error is not None or other.error is not None:
        assert type(reference.error) is type(other.error) and str(reference.error) == str(
            other.error
        ), f"{case!r}: numpy gave {reference.error!r}, {backend} gave {other.error!r}"
        return
    assert reference.arrays.keys() == other.arrays.keys(), (case, list(other.arrays))
    for name, expected in reference.arrays.items():
        actual = other.arrays[name]
        if expected is None or actual is None:
            assert expected is None and actual is None, f"{case!r}: {name} missing on one side"
            continue
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, (
            f"{case!r}: {name} is {actual.shape} {actual.dtype} on {backend}, "
            f"{expected.shape} {expected.dtype} on numpy"
        )
        if expected.dtype.kind != "f":
            np.testing.assert_array_equal(actual, expected, err_msg=f"{case!r}: {name}")
            continue
        tol = 1e-9 if expected.dtype == np.float64 else 1e-4
        scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0)))
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale,
                                   err_msg=f"{case!r}: {name} on {backend}")  # fmt: skip


# ----------------------------------------------------------------------------- the program
def fuzz(backend: str, examples: int, random_seed=None, ops=tuple(BUILDERS)):
    """Check about ``examples`` random cases on ``backend`` (numpy: the reference contract only),
    the same share for every op builder; return how many calls of each op computed a result or
    were refused, and the refusals' messages (numbers left out) per op."""
    tally: Counter = Counter()
    reasons = defaultdict(Counter)
    share = -(-examples // len(ops))
    for op in sorted(ops):

        @settings(max_examples=share, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), print_blob=True)  # fmt: skip
        @given(cases((op,)))
        def check(case):
            reference = run(case, "numpy")
            check_reference(case, reference)
            if backend != "numpy":
                check_same(case, reference, run(case, backend), backend)
            tally[(case.op, "refused" if reference.error else "computed")] += 1
            if reference.error is not None:
                reasons[case.op][_reason(reference.error)] += 1

        if random_seed is not None:
            check = seed(random_seed)(check)
        check()
    return tally, reasons


def _reason(error) -> str:
    """The message without its numbers: refusals of the same kind count together."""
    return re.sub(r"[-0-9.]+|\(.*?\)|\[.*?\]|'.*?'", "#", str(error))[:90]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--reasons", action="store_true", help="list why calls were refused")
    args = parser.parse_args(argv)
    tally, reasons = fuzz(args.backend, args.examples, args.seed)
    for (op, kind), count in sorted(tally.items()):
        print(f"tally {op} {kind} {count}")
    if args.reasons:
        for _op, counter in sorted(reasons.items()):
            for reason, count in counter.most_common():
                print(f"refused {count:4d} {reason}")
    print(f"cases {sum(tally.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
