"""The public op namespace, named and shaped like ``torch.nn.functional``.

    import minisegnet.functional as F
    loss = F.cross_entropy(F.relu(x @ w), target)

Each function here checks its arguments, then calls one ``Function`` from ``minisegnet/ops/``
(where the math, the reference code and the kernels live). Layer ops (convolution, pooling,
interpolation, normalisation) are added here as their op files land.
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import DeviceError, device_of, is_device_array, like_backend
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
from minisegnet.ops.shape import cat
from minisegnet.tensor import Tensor

__all__ = [
    "relu",
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "sqrt",
    "pad",
    "cat",
    "cross_entropy",
]


def _require_tensor(name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a minisegnet Tensor, got {type(value).__name__}")
    return value


def _require_float(op: str, input) -> Tensor:
    _require_tensor("input", input)
    if input.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: input must be float32 or float64, got dtype {input.dtype}")
    return input


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


def pad(input: Tensor, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad with a constant; ``pad`` lists (before, after) pairs starting from the last axis."""
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is implemented, got mode={mode!r}")
    if not isinstance(pad, (tuple, list)) or not all(
        isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in pad
    ):
        raise TypeError(f"pad: pad must be a tuple of ints (last axis first), got {pad!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"pad: value must be a number, got {value!r}")
    return shape.Pad.apply(
        _require_tensor("input", input), pad=tuple(int(p) for p in pad), value=value
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
        if input.dtype.kind == "f":  # (a non-float input is refused by the op)
            weight = weight.astype(input.dtype, copy=False)
    return loss.CrossEntropy.apply(
        input, target, weight=weight, ignore_index=ignore_index, reduction=reduction
    )


# --------------------------------------------------------------------------- normalisation,
# dropout, softmax: the math is in ops/batch_norm.py, ops/lrn.py, ops/dropout.py, ops/softmax.py
def _float_array(name: str, value, like: Tensor):
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
    running_mean = _float_array("running_mean", running_mean, input)
    running_var = _float_array("running_var", running_var, input)
    weight, bias = _affine("weight", weight, input), _affine("bias", bias, input)
    batch_norm_op.check_batch_norm_args(
        input,
        running_mean,
        running_var,
        None if weight is None else weight.data,
        None if bias is None else bias.data,
        training,
        momentum,
        eps,
    )
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


def dropout(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, seed=None
) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) when training;
    the identity otherwise. ``seed`` (an int) fixes the mask on every backend; None draws one
    from NumPy's global generator. ``inplace`` is accepted and ignored."""
    _require_tensor("input", input)
    p = dropout_op.check_p(p)
    if not training or p == 0:
        return input
    dropout_op.check_input(input)
    seed = dropout_op.random_seed() if seed is None else dropout_op.check_seed(seed)
    return dropout_op.Dropout.apply(input, p=p, seed=seed, per_channel=False)


def dropout2d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, seed=None
) -> Tensor:
    """Zero whole channels (n, c) of an (N, C, H, W) input with probability ``p``; see
    :func:`dropout`."""
    _require_tensor("input", input)
    p = dropout_op.check_p(p, "dropout2d")
    if input.ndim != 4:
        raise ValueError(f"dropout2d: input must be (N, C, H, W), got shape {input.shape}")
    if not training or p == 0:
        return input
    dropout_op.check_input(input, "dropout2d")
    seed = dropout_op.random_seed() if seed is None else dropout_op.check_seed(seed, "dropout2d")
    return dropout_op.Dropout.apply(input, p=p, seed=seed, per_channel=True)


def local_response_norm(
    input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Tensor:
    """x * (k + alpha/size * sum of x^2 over ``size`` neighbouring channels) ** -beta
    (PyTorch's formula); see ``minisegnet/ops/lrn.py``."""
    _require_tensor("input", input)
    lrn_op.check_lrn_args(input, size, alpha, beta, k)
    return lrn_op.LocalResponseNorm.apply(
        input, size=int(size), alpha=float(alpha), beta=float(beta), k=float(k)
    )


def softmax(input: Tensor, dim=None, dtype=None) -> Tensor:
    """exp(x - max) / sum exp(x - max) along ``dim`` (required); ``dtype`` converts first."""
    _require_tensor("input", input)
    axis = softmax_op.check_dim("softmax", dim, input.ndim)
    if dtype is not None:
        input = input.to(dtype)
    softmax_op.check_float("softmax", input)
    return softmax_op.Softmax.apply(input, axis=axis)


def log_softmax(input: Tensor, dim=None, dtype=None) -> Tensor:
    """x - max - log sum exp(x - max) along ``dim`` (required); ``dtype`` converts first."""
    _require_tensor("input", input)
    axis = softmax_op.check_dim("log_softmax", dim, input.ndim)
    if dtype is not None:
        input = input.to(dtype)
    softmax_op.check_float("log_softmax", input)
    return softmax_op.LogSoftmax.apply(input, axis=axis)


__all__ += [
    "batch_norm", "dropout", "dropout2d", "local_response_norm", "softmax", "log_softmax",
]  # fmt: skip


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


__all__ += [
    "max_pool2d", "max_unpool2d", "avg_pool2d", "adaptive_avg_pool2d", "interpolate",
    "PoolIndices", "to_flat_indices", "from_flat_indices",
]  # fmt: skip


# --------------------------------------------------------------------------- convolution: the
# math is in ops/conv.py and ops/conv_transpose.py
def _optional_tensor(name: str, value):
    if value is not None and not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a minisegnet Tensor or None, got {type(value).__name__}")
    return value


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


__all__ += ["conv2d", "conv_transpose2d"]


cat = cat
