"""Max pooling with switches, max unpooling, average and adaptive average pooling as CUDA kernels
(``kernels/pooling.cu``), for the ``cuda`` and ``cuda-emu`` backends.

Kernels launched (T = float, double; I = unsigned char, int, the switch type):
    max_pool2d_forward<T, I>        one thread per output; switch = ky*kw + kx, first max wins
    max_pool2d_backward<T, I>       one thread per input pixel, gathering (no atomics)
    max_unpool2d_forward<T, I>      zeros, then one thread per input places it at its switch
                                    (only when windows do not overlap; see below)
    max_unpool2d_backward<T, I>     one thread per pooled element reads dy at its switch
    avg_pool2d_forward<T>, avg_pool2d_backward<T>                       (backward: gather)
    adaptive_avg_pool2d_forward<T>, adaptive_avg_pool2d_backward<T>     (backward: gather)

Switches are uint8 when kh*kw <= 256, else int32 (the contract's format). Max unpooling sums
values whose switches name the same pixel (it is max pooling's backward with x for dy); that
can only happen when windows overlap (stride < kernel), and then the scatter kernel would race,
so ``max_unpool2d_forward`` launches ``max_pool2d_backward<T, I>`` (a gather) instead.
"""

from __future__ import annotations

from minisegnet.arrays import array_module
from minisegnet.cuda.launch import (
    check_array,
    ctype,
    int32,
    launch_1d,
    launch_plane_map,
    plane_sizes,
)
from minisegnet.ops.geometry import pair, switch_dtype

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "max_unpool2d_forward",
    "max_unpool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
    "switch_dtype",
]

SOURCE = "pooling.cu"


def _window(op, kernel, stride, padding) -> tuple:
    """(kh, kw, sh, sw, ph, pw): the window arguments every kernel here takes after the sizes."""
    kernel = pair(op, "kernel", kernel, 1)
    stride = pair(op, "stride", stride, 1)
    padding = pair(op, "padding", padding, 0)
    return (*kernel, *stride, *padding)


def _check_switches(op, idx, like_shape, window):
    kernel = window[:2]
    check_array(op, "idx", idx, ndim=4, dtypes=("uint8", "int32"))
    if tuple(idx.shape) != tuple(like_shape):
        raise ValueError(f"{op}: idx must have shape {tuple(like_shape)}, got {tuple(idx.shape)}")
    if idx.dtype != switch_dtype(kernel):
        raise TypeError(
            f"{op}: idx for a {kernel} kernel must have dtype {switch_dtype(kernel)}, got "
            f"{idx.dtype}"
        )


def _types(x, idx) -> str:
    """The template arguments ``T, I`` of the max kernels."""
    return f"{ctype(x.dtype)}, {ctype(idx.dtype)}"


def max_pool2d_forward(x, kernel, stride, padding, out_size):
    """x (N, C, H, W) -> (y, idx) (N, C, Ho, Wo). Launches ``max_pool2d_forward<T, I>``."""
    op = "max_pool2d_forward"
    (h, w), (ho, wo) = plane_sizes(op, x, out_size, grad=False)
    window = _window(op, kernel, stride, padding)
    n, c = x.shape[:2]
    xp = array_module(x)
    y = xp.empty((n, c, ho, wo), x.dtype)
    idx = xp.empty((n, c, ho, wo), switch_dtype(window[:2]))
    args = (x, y, idx, *int32(n, c, h, w, ho, wo, *window))
    launch_1d(SOURCE, f"max_pool2d_forward<{_types(x, idx)}>", y.size, args)
    return y, idx


def max_pool2d_backward(dy, idx, in_size, kernel, stride, padding):
    """dy, idx (N, C, Ho, Wo) -> dx (N, C, H, W). Launches ``max_pool2d_backward<T, I>``."""
    op = "max_pool2d_backward"
    (h, w), (ho, wo) = plane_sizes(op, dy, in_size, grad=True)
    window = _window(op, kernel, stride, padding)
    _check_switches(op, idx, dy.shape, window)
    n, c = dy.shape[:2]
    dx = array_module(dy).empty((n, c, h, w), dy.dtype)
    args = (dy, idx, dx, *int32(n, c, h, w, ho, wo, *window))
    launch_1d(SOURCE, f"max_pool2d_backward<{_types(dy, idx)}>", dx.size, args)
    return dx


def max_unpool2d_forward(x, idx, out_size, kernel, stride, padding):
    """x, idx (N, C, Hp, Wp) -> y (N, C, H, W), (H, W) = out_size: x placed at its switches,
    zeros elsewhere (colliding switches add up).

    Launches ``max_unpool2d_forward<T, I>`` (zeros + place) when windows do not overlap
    (stride >= kernel on both axes, SegNet's case), else ``max_pool2d_backward<T, I>``, the
    same map written as a gather, so that no two threads ever write one pixel.
    """
    op = "max_unpool2d_forward"
    check_array(op, "x", x, ndim=4)
    window = _window(op, kernel, stride, padding)
    _check_switches(op, idx, x.shape, window)
    h, w = pair(op, "out_size", out_size, 0)
    n, c, hp, wp = x.shape
    kh, kw, sh, sw = window[:4]
    if sh < kh or sw < kw:
        return max_pool2d_backward(x, idx, (h, w), kernel, stride, padding)
    y = array_module(x).zeros((n, c, h, w), x.dtype)
    args = (x, idx, y, *int32(n, c, hp, wp, h, w, *window))
    launch_1d(SOURCE, f"max_unpool2d_forward<{_types(x, idx)}>", x.size if y.size else 0, args)
    return y


def max_unpool2d_backward(dy, idx, kernel, stride, padding):
    """dy (N, C, H, W), idx (N, C, Hp, Wp) -> dx (N, C, Hp, Wp) = dy at each switch.
    Launches ``max_unpool2d_backward<T, I>``."""
    op = "max_unpool2d_backward"
    check_array(op, "dy", dy, ndim=4)
    window = _window(op, kernel, stride, padding)
    check_array(op, "idx", idx, ndim=4, dtypes=("uint8", "int32"))
    _check_switches(op, idx, dy.shape[:2] + idx.shape[2:], window)
    n, c, h, w = dy.shape
    hp, wp = idx.shape[2:]
    dx = array_module(dy).empty((n, c, hp, wp), dy.dtype)
    args = (dy, idx, dx, *int32(n, c, hp, wp, h, w, *window))
    launch_1d(SOURCE, f"max_unpool2d_backward<{_types(dy, idx)}>", dx.size, args)
    return dx


def _avg_pool(op, src, size, kernel, stride, padding, count_include_pad, grad):
    """The shared body of avg_pool2d_forward (src = x, size = out_size) and
    avg_pool2d_backward (src = dy, size = in_size)."""
    in_size, out_size = plane_sizes(op, src, size, grad)
    extra = int32(*_window(op, kernel, stride, padding), bool(count_include_pad))
    return launch_plane_map(SOURCE, op, src, in_size, out_size, extra, grad)


def avg_pool2d_forward(x, kernel, stride, padding, out_size, count_include_pad):
    """x (N, C, H, W) -> y (N, C, Ho, Wo). Launches ``avg_pool2d_forward<T>``."""
    op = "avg_pool2d_forward"
    return _avg_pool(op, x, out_size, kernel, stride, padding, count_include_pad, grad=False)


def avg_pool2d_backward(dy, in_size, kernel, stride, padding, count_include_pad):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W). Launches ``avg_pool2d_backward<T>``."""
    op = "avg_pool2d_backward"
    return _avg_pool(op, dy, in_size, kernel, stride, padding, count_include_pad, grad=True)


def adaptive_avg_pool2d_forward(x, out_size):
    """x (N, C, H, W) -> y (N, C, Ho, Wo). Launches ``adaptive_avg_pool2d_forward<T>``."""
    op = "adaptive_avg_pool2d_forward"
    sizes = plane_sizes(op, x, out_size, grad=False, least=1, nonempty_input=True)
    return launch_plane_map(SOURCE, op, x, *sizes)


def adaptive_avg_pool2d_backward(dy, in_size):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W). Launches ``adaptive_avg_pool2d_backward<T>``."""
    op = "adaptive_avg_pool2d_backward"
    return launch_plane_map(SOURCE, op, dy, *plane_sizes(op, dy, in_size, True, 1), grad=True)
