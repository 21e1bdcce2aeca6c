"""The public op namespace, named and shaped like ``torch.nn.functional``.

    import minisegnet.functional as F
    loss = F.cross_entropy(F.relu(x @ w), target)

This file is the one public entry of every op: each function checks all of its arguments here,
once, for every backend (an error names the op, the argument, what was expected and what was
given), then calls one ``Function`` from ``minisegnet/ops/``, where the math, the reference code
and the kernels live and the inputs are trusted. Arguments are named as in PyTorch (``dim``).
The shape checks live in ``minisegnet/ops/geometry.py``; those and the few ``check_*`` functions
here are also called by ``nn`` layers that check their options when they are built.
"""

from __future__ import annotations

import warnings

import numpy as np

from minisegnet.arrays import DeviceError, array_module, device_of, is_device_array, like_backend
from minisegnet.ops import avg_pooling as avg_pooling_op
from minisegnet.ops import batch_norm as batch_norm_op
from minisegnet.ops import conv as conv_op
from minisegnet.ops import conv_transpose as conv_transpose_op
from minisegnet.ops import dropout as dropout_op
from minisegnet.ops import elementwise, geometry, loss, shape
from minisegnet.ops import interpolate as interpolate_op
from minisegnet.ops import lrn as lrn_op
from minisegnet.ops import pooling as pooling_op
from minisegnet.ops import softmax as softmax_op
from minisegnet.ops import unpooling as unpooling_op
from minisegnet.tensor import Tensor

# fmt: off
__all__ = [
    "relu", "sigmoid", "tanh", "exp", "log", "sqrt",                                 # activations
    "pad", "cat", "stack",                                                           # shape
    "softmax", "log_softmax",                                                        # softmax
    "cross_entropy",                                                                 # losses
    "batch_norm", "local_response_norm",                                             # normalisation
    "dropout", "dropout2d",                                                          # dropout
    "max_pool2d", "max_unpool2d", "avg_pool2d", "adaptive_avg_pool2d",               # pooling
    "PoolIndices", "to_flat_indices", "from_flat_indices",                           # its switches
    "interpolate",                                                                   # resizing
    "conv2d", "conv_transpose2d",                                                    # convolution
]
# fmt: on

_FLOATS = (np.float32, np.float64)


# --------------------------------------------------------------------------- checks every op uses
def _require_tensor(name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a minisegnet Tensor, got {type(value).__name__}")
    return value


def _optional_tensor(name: str, value):
    if value is not None and not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a minisegnet Tensor or None, got {type(value).__name__}")
    return value


def _require_float(op: str, input) -> Tensor:
    _require_tensor("input", input)
    if input.dtype not in _FLOATS:
        raise TypeError(f"{op}: input must be float32 or float64, got dtype {input.dtype}")
    return input


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _renamed(op: str, dim, axis):
    """``dim``, or the deprecated ``axis`` keyword that an earlier API took instead."""
    if axis is None:
        return dim
    warnings.warn(f"{op}: axis= is deprecated, use dim=", DeprecationWarning, stacklevel=3)
    return axis


# --------------------------------------------------------------------------- activations: the
# math is in ops/elementwise.py
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(input, 0), elementwise. ``inplace`` is accepted for PyTorch compatibility and ignored
    (every op here returns a new array)."""
    return elementwise.ReLU.apply(_require_float("relu", input))


def sigmoid(input: Tensor) -> Tensor:
    return elementwise.Sigmoid.apply(_require_float("sigmoid", input))


def tanh(input: Tensor) -> Tensor:
    return elementwise.Tanh.apply(_require_float("tanh", input))


def exp(input: Tensor) -> Tensor:
    return elementwise.Exp.apply(_require_float("exp", input))


def log(input: Tensor) -> Tensor:
    return elementwise.Log.apply(_require_float("log", input))


def sqrt(input: Tensor) -> Tensor:
    return elementwise.Sqrt.apply(_require_float("sqrt", input))


# --------------------------------------------------------------------------- shape: padding and
# joining; the math is in ops/shape.py
def pad(input: Tensor, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad with a constant; ``pad`` lists (before, after) pairs starting from the last axis."""
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is implemented, got mode={mode!r}")
    if not isinstance(pad, (tuple, list)) or not all(_is_int(p) for p in pad):
        raise TypeError(f"pad: pad must be a tuple of ints (last axis first), got {pad!r}")
    if not _is_number(value):
        raise TypeError(f"pad: value must be a number, got {value!r}")
    _require_tensor("input", input)
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(
            f"pad: expected an even number of values, at most 2 per axis of a {input.ndim}-d "
            f"tensor, got {pad}"
        )
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding (cropping) is not supported, got {pad}")
    return shape.Pad.apply(input, pad=pad, value=value)


def _check_cat(op: str, tensors) -> list:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: tensors must be a non-empty sequence")
    for k, t in enumerate(tensors):
        _require_tensor(f"{op}: tensors[{k}]", t)
    return tensors


def cat(tensors, dim: int = 0, *, axis=None) -> Tensor:
    """Concatenate tensors along ``dim`` (``torch.cat``): the same shape outside ``dim``, the
    same dtype. ``axis`` is the deprecated name of ``dim``."""
    dim = _renamed("cat", dim, axis)
    tensors = _check_cat("cat", tensors)
    first = tensors[0]
    if not _is_int(dim) or not -first.ndim <= dim < first.ndim:
        raise ValueError(f"cat: dim must be in [{-first.ndim}, {first.ndim}), got {dim}")
    dim = int(dim) % first.ndim
    for k, t in enumerate(tensors):
        if t.ndim != first.ndim or any(
            t.shape[d] != first.shape[d] for d in range(t.ndim) if d != dim
        ):
            raise ValueError(
                f"cat: tensors[{k}] has shape {t.shape}, which does not match tensors[0] "
                f"{first.shape} outside dim {dim}"
            )
        if t.dtype != first.dtype:
            raise TypeError(f"cat: tensors[{k}] has dtype {t.dtype}, tensors[0] has {first.dtype}")
    return shape.Concatenate.apply(*tensors, axis=dim)


def stack(tensors, dim: int = 0, *, axis=None) -> Tensor:
    """Join same-shaped tensors along a new axis ``dim`` (``torch.stack``). ``axis`` is the
    deprecated name of ``dim``."""
    dim = _renamed("stack", dim, axis)
    tensors = _check_cat("stack", tensors)
    ndim = tensors[0].ndim
    if not _is_int(dim) or not -(ndim + 1) <= dim <= ndim:
        raise ValueError(f"stack: dim must be in [{-(ndim + 1)}, {ndim}], got {dim}")
    dim = int(dim) % (ndim + 1)
    return cat([t.reshape(t.shape[:dim] + (1,) + t.shape[dim:]) for t in tensors], dim)


# --------------------------------------------------------------------------- softmax: the math
# is in ops/softmax.py
def _softmax_dim(op: str, input, dim, dtype) -> tuple[Tensor, int]:
    """(the input converted to ``dtype``, ``dim`` as a non-negative int); errors name ``dim``
    and the valid range."""
    _require_tensor("input", input)
    ndim = input.ndim
    if dim is None:
        raise ValueError(
            f"{op}: dim must be given (the axis to normalise over, e.g. dim=1 for "
            "(N, C, H, W) logits)"
        )
    if not _is_int(dim):
        raise TypeError(f"{op}: dim must be an integer, got {dim!r}")
    if ndim == 0:
        raise ValueError(f"{op}: input must have at least 1 dimension, got a 0-d tensor")
    if not -ndim <= dim < ndim:
        raise ValueError(
            f"{op}: dim must be in [{-ndim}, {ndim - 1}] for a {ndim}-d input, got dim={dim}"
        )
    if dtype is not None:
        input = input.to(dtype)
    if input.dtype not in _FLOATS:
        raise TypeError(
            f"{op}: input must be float32 or float64 (or pass dtype= to convert it), "
            f"got dtype {input.dtype}"
        )
    return input, int(dim) % ndim


def softmax(input: Tensor, dim=None, dtype=None) -> Tensor:
    """exp(x - max) / sum exp(x - max) along ``dim`` (required); ``dtype`` converts first."""
    input, dim = _softmax_dim("softmax", input, dim, dtype)
    return softmax_op.Softmax.apply(input, axis=dim)


def log_softmax(input: Tensor, dim=None, dtype=None) -> Tensor:
    """x - max - log sum exp(x - max) along ``dim`` (required); ``dtype`` converts first."""
    input, dim = _softmax_dim("log_softmax", input, dim, dtype)
    return softmax_op.LogSoftmax.apply(input, axis=dim)


# --------------------------------------------------------------------------- losses: the math is
# in ops/loss.py
def _check_cross_entropy(logits, target, weight, ignore_index, reduction) -> None:
    """Shapes, dtypes and label values; ``target`` and ``weight`` are arrays by now."""
    if logits.ndim not in (2, 4):
        raise ValueError(
            f"cross_entropy: input must be (N, C) or (N, C, H, W) logits, got shape {logits.shape}"
        )
    if logits.dtype not in _FLOATS:
        raise TypeError(
            f"cross_entropy: input must be float32 or float64, got dtype {logits.dtype}"
        )
    if logits.shape[1] < 1:
        raise ValueError(
            f"cross_entropy: input must have at least one class, got shape {logits.shape}"
        )
    if not _is_int(ignore_index):
        raise TypeError(f"cross_entropy: ignore_index must be an int, got {ignore_index!r}")
    expected = (logits.shape[0],) + logits.shape[2:]
    if target.shape != expected:
        raise ValueError(
            f"cross_entropy: target must have shape {expected} for input of shape "
            f"{logits.shape}, got {target.shape}"
        )
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must hold integer class labels, got dtype {target.dtype}"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    num_classes = logits.shape[1]
    if weight is not None and weight.shape != (num_classes,):
        raise ValueError(
            f"cross_entropy: weight must have shape ({num_classes},) (one per class), "
            f"got {weight.shape}"
        )
    if weight is not None:
        bad = ~(array_module(weight).isfinite(weight) & (weight >= 0))
        if bool(bad.any()):
            c = int(bad.nonzero()[0][0])
            raise ValueError(
                f"cross_entropy: weight must hold finite, non-negative class weights, got "
                f"{float(weight[c])} for class {c}"
            )
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        values = sorted(set(int(v) for v in array_module(target).unique(target[bad])[:10].tolist()))
        raise ValueError(
            f"cross_entropy: target holds values {values} that are neither a class in "
            f"[0, {num_classes}) nor ignore_index={ignore_index}"
        )


def cross_entropy(
    input: Tensor, target, weight=None, ignore_index: int = 255, reduction: str = "mean"
) -> Tensor:
    """Softmax cross-entropy of logits ``input`` (N, C[, H, W]) against labels ``target``
    (N[, H, W]); see ``minisegnet/ops/loss.py`` for the formula and the weighted mean."""
    _require_tensor("input", input)
    # Targets and class weights carry no gradient: given as lists or host or device arrays, they
    # are moved to the backend's device (minisegnet/arrays.py).
    target = like_backend(target, "cross_entropy", "target")
    if weight is not None:
        weight = like_backend(weight, "cross_entropy", "weight")
        if weight.dtype.kind not in "iuf":
            raise TypeError(
                f"cross_entropy: weight must be numbers (one per class), got dtype {weight.dtype}"
            )
        if input.dtype.kind == "f":  # (a non-float input is refused below)
            weight = weight.astype(input.dtype, copy=False)
    _check_cross_entropy(input, target, weight, ignore_index, reduction)
    return loss.CrossEntropy.apply(
        input, target, weight=weight, ignore_index=ignore_index, reduction=reduction
    )


# --------------------------------------------------------------------------- normalisation: the
# math is in ops/batch_norm.py and ops/lrn.py
def _running_stat(name: str, value, like: Tensor):
    """A running-statistics argument: a Tensor's array or an array of ``like``'s module."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        value = value.data
    if not (isinstance(value, np.ndarray) or is_device_array(value)):
        raise TypeError(
            f"{name} must be an array or Tensor (it is updated in place), "
            f"got {type(value).__name__}"
        )
    if device_of(value) != like.device:
        raise DeviceError(
            f"batch_norm: {name} is on {device_of(value)} and the input on {like.device}; it is "
            f"updated in place, so it cannot be moved for you: move the module with "
            f".to({like.device!r})"
        )
    return value


def _affine(name: str, value, like: Tensor):
    """weight/bias: a Tensor (learned) or an array (wrapped, no gradient) or None."""
    if value is None or isinstance(value, Tensor):
        return value
    return Tensor.from_array(like_backend(value, "batch_norm", name))


def _check_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Ranks, channel counts and dtypes; the message names the argument."""
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"batch_norm: input must be (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}"
        )
    if x.dtype not in _FLOATS:
        raise TypeError(f"batch_norm: input must be float32 or float64, got dtype {x.dtype}")
    channels = x.shape[1]
    for name, value in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if value is None:
            continue
        if tuple(value.shape) != (channels,):
            raise ValueError(
                f"batch_norm: {name} must have shape ({channels},) for input with {channels} "
                f"channels (input shape {x.shape}), got {tuple(value.shape)}"
            )
        if value.dtype.kind != "f":
            raise TypeError(f"batch_norm: {name} must be a float array, got dtype {value.dtype}")
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and value.dtype != x.dtype:
            raise TypeError(
                f"batch_norm: {name} has dtype {value.dtype} but input has {x.dtype}; "
                "convert one with .to(dtype)"
            )
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError("batch_norm: training=False needs running_mean and running_var (got None)")
    if training and x.size > 0:  # an empty batch is allowed (an empty output, as in PyTorch)
        if x.size // channels < 2:
            raise ValueError(
                f"batch_norm: training needs more than 1 value per channel to compute a "
                f"variance, got input shape {x.shape}"
            )
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum}")
    if not float(eps) > 0:
        raise ValueError(f"batch_norm: eps must be > 0, got {eps}")


def batch_norm(
    input: Tensor,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation of (N, C[, H, W]) ``input`` per channel; with ``training`` it uses
    the batch statistics and updates ``running_mean``/``running_var`` in place (unbiased var).
    See ``minisegnet/ops/batch_norm.py``."""
    _require_tensor("input", input)
    running_mean = _running_stat("running_mean", running_mean, input)
    running_var = _running_stat("running_var", running_var, input)
    weight, bias = _affine("weight", weight, input), _affine("bias", bias, input)
    _check_batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    return batch_norm_op.BatchNorm.apply(
        input,
        weight,
        bias,
        running_mean=running_mean,
        running_var=running_var,
        training=bool(training),
        momentum=float(momentum),
        eps=float(eps),
    )


def check_lrn_size(op: str, size) -> int:
    """The window ``size`` of local response norm, an int >= 1 (also checked by the layer
    ``nn.LocalResponseNorm`` when it is built)."""
    if not _is_int(size):
        raise TypeError(f"{op}: size must be an integer >= 1, got {size!r}")
    if size < 1:
        raise ValueError(f"{op}: size must be >= 1, got size={size}")
    return int(size)


def local_response_norm(
    input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Tensor:
    """x * (k + alpha/size * sum of x^2 over ``size`` neighbouring channels) ** -beta
    (PyTorch's formula); see ``minisegnet/ops/lrn.py``."""
    op = "local_response_norm"
    _require_tensor("input", input)
    if input.ndim < 3:
        raise ValueError(
            f"{op}: input must have at least 3 dimensions (N, C, ...), got shape {input.shape}"
        )
    if input.dtype not in _FLOATS:
        raise TypeError(f"{op}: input must be float32 or float64, got dtype {input.dtype}")
    size = check_lrn_size(op, size)
    for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
        if not _is_number(value):
            raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    return lrn_op.LocalResponseNorm.apply(
        input, size=size, alpha=float(alpha), beta=float(beta), k=float(k)
    )


# --------------------------------------------------------------------------- dropout: the math
# and the random numbers are in ops/dropout.py
def check_dropout_p(p, op: str = "dropout") -> float:
    """The drop probability, a number in [0, 1] (also checked by the ``nn.Dropout`` layers)."""
    if not _is_number(p):
        raise TypeError(f"{op}: p must be a number in [0, 1], got {p!r}")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{op}: p must be a probability in [0, 1], got p={p}")
    return float(p)


def check_dropout_seed(seed, op: str = "dropout") -> int:
    """A mask's seed: an integer, taken modulo 2**64 (None is handled by the caller)."""
    if not _is_int(seed):
        raise TypeError(f"{op}: seed must be an integer (or None), got {seed!r}")
    return dropout_op.seed64(seed)


def _dropout(op: str, input, p, training, seed, per_channel: bool) -> Tensor:
    _require_tensor("input", input)
    p = check_dropout_p(p, op)
    if per_channel and input.ndim != 4:
        raise ValueError(f"{op}: input must be (N, C, H, W), got shape {input.shape}")
    if not training or p == 0:
        return input
    if input.dtype not in _FLOATS:
        raise TypeError(f"{op}: input must be float32 or float64, got dtype {input.dtype}")
    seed = dropout_op.random_seed() if seed is None else check_dropout_seed(seed, op)
    return dropout_op.Dropout.apply(input, p=p, seed=seed, per_channel=per_channel)


def dropout(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, seed=None
) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) when training;
    the identity otherwise. ``seed`` (an int) fixes the mask on every backend; None draws one
    from NumPy's global generator. ``inplace`` is accepted and ignored."""
    return _dropout("dropout", input, p, training, seed, per_channel=False)


def dropout2d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, seed=None
) -> Tensor:
    """Zero whole channels (n, c) of an (N, C, H, W) input with probability ``p``; see
    :func:`dropout`."""
    return _dropout("dropout2d", input, p, training, seed, per_channel=True)


# --------------------------------------------------------------------------- pooling, unpooling,
# interpolation: the math is in ops/pooling.py, ops/unpooling.py, ops/avg_pooling.py and
# ops/interpolate.py
PoolIndices = pooling_op.PoolIndices
to_flat_indices = pooling_op.to_flat_indices
from_flat_indices = pooling_op.from_flat_indices


def max_pool2d(
    input: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False
):
    """Max pooling of (N, C, H, W) ``input``; with ``return_indices`` also the switches as a
    :class:`PoolIndices` (uint8 window positions plus the geometry, for ``max_unpool2d``).
    Ties go to the first maximum in row-major order. See ``minisegnet/ops/pooling.py``."""
    _require_tensor("input", input)
    kernel, stride, padding, out_size = geometry.check_pool2d(
        "max_pool2d", input, kernel_size, stride, padding, ceil_mode
    )
    y, idx = pooling_op.MaxPool2d.apply(
        input, kernel=kernel, stride=stride, padding=padding, out_size=out_size
    )
    if return_indices:
        return y, pooling_op.PoolIndices(idx.data, kernel, stride, padding, input.shape[2:])
    return y


def max_unpool2d(input: Tensor, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Place every value of ``input`` at its switch, zeros elsewhere (colliding switches add);
    ``output_size`` (H, W) or (N, C, H, W) for odd sizes. See ``minisegnet/ops/unpooling.py``."""
    _require_tensor("input", input)
    op = "max_unpool2d"
    kernel, stride, padding, out_size = geometry.check_max_unpool2d(
        input, kernel_size, stride, padding, output_size
    )
    if not isinstance(indices, pooling_op.PoolIndices):  # PyTorch-style flat indices
        raw = indices.data if isinstance(indices, Tensor) else indices
        geometry.check_flat_indices(op, raw, type(indices).__name__)
        indices = pooling_op.from_flat_indices(
            raw, kernel, stride, padding, input_size=out_size, op=op
        )
    geometry.check_pool_indices(op, indices, input.shape, kernel, stride, padding, out_size)
    switches = like_backend(indices.data, op, "indices")  # non-differentiable: moved, once
    geometry.check_switches(op, switches, kernel, stride, padding, out_size)
    return unpooling_op.MaxUnpool2d.apply(
        input, switches, out_size=out_size, kernel=kernel, stride=stride, padding=padding
    )


def avg_pool2d(
    input: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
):
    """Average pooling (PyTorch's divisor rules). See ``minisegnet/ops/avg_pooling.py``."""
    _require_tensor("input", input)
    kernel, stride, padding, out_size = geometry.check_pool2d(
        "avg_pool2d", input, kernel_size, stride, padding, ceil_mode
    )
    return avg_pooling_op.AvgPool2d.apply(
        input, kernel=kernel, stride=stride, padding=padding, out_size=out_size,
        count_include_pad=bool(count_include_pad),
    )  # fmt: skip


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average over ``output_size`` bins; bin i spans floor(i*H/out) .. ceil((i+1)*H/out).
    See ``minisegnet/ops/avg_pooling.py``."""
    _require_tensor("input", input)
    out_size = geometry.check_adaptive_avg_pool2d(input, output_size)
    return avg_pooling_op.AdaptiveAvgPool2d.apply(input, out_size=out_size)


def interpolate(
    input: Tensor, size=None, scale_factor=None, mode: str = "bilinear", align_corners=None
) -> Tensor:
    """Resize (N, C, H, W) ``input`` with mode "bilinear" (align_corners None means False) or
    "nearest" (label maps; integer inputs allowed). See ``minisegnet/ops/interpolate.py``."""
    _require_tensor("input", input)
    out_size, scale = geometry.check_interpolate(input, size, scale_factor, mode, align_corners)
    if mode == "nearest":
        return interpolate_op.Nearest.apply(input, out_size=out_size, scale=scale)
    return interpolate_op.Bilinear.apply(
        input, out_size=out_size, align_corners=bool(align_corners), scale=scale
    )


# --------------------------------------------------------------------------- convolution: the
# math is in ops/conv.py and ops/conv_transpose.py
def conv2d(input: Tensor, weight: Tensor, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of (N, C, H, W) ``input`` with ``weight``
    (O, C/groups, kh, kw); Ho = floor((H + 2*padding - dilation*(kh-1) - 1) / stride) + 1.
    im2col + matrix product, chunked over the batch. See ``minisegnet/ops/conv.py``."""
    _require_tensor("input", input)
    _require_tensor("weight", weight)
    _optional_tensor("bias", bias)
    stride, padding, dilation, groups = geometry.check_conv2d(
        input, weight, bias, stride, padding, dilation, groups
    )
    return conv_op.Conv2d.apply(
        input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias=None,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
):
    """Transposed convolution of (N, C, H, W) ``input`` with ``weight`` (C, O/groups, kh, kw);
    Ho = (H-1)*stride - 2*padding + dilation*(kh-1) + output_padding + 1. The adjoint of
    conv2d (its backward-data). See ``minisegnet/ops/conv_transpose.py``."""
    _require_tensor("input", input)
    _require_tensor("weight", weight)
    _optional_tensor("bias", bias)
    stride, padding, output_padding, dilation, groups = geometry.check_conv_transpose2d(
        input, weight, bias, stride, padding, output_padding, groups, dilation
    )
    return conv_transpose_op.ConvTranspose2d.apply(
        input, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        groups=groups, dilation=dilation,
    )  # fmt: skip
