"""Transposed 2-D convolution ("deconvolution", fractionally strided convolution).

A convolution with weight w maps an image z (N, O', H', W') to x = conv2d(z, w) (N, C', H, W); as
a linear map it is a matrix A. The transposed convolution is A^T: it maps x back to the shape of
z, spreading each input pixel over a kh x kw patch of the output, stride pixels apart. That is
exactly the convolution's backward-data, so it is built from the same pieces (``ops/conv.py``):

    forward        y  = col2im(w^T @ x)     GEMM, then col2im     (conv2d's dx)
    backward-data  dx = conv2d(dy, w)       im2col, then GEMM     (conv2d's forward)
    backward-w     dw = sum over n of x[n] @ im2col(dy)[n]^T      (conv2d's dw, roles swapped)
    bias           db = dy summed over n, oy, ox

Written out, with w of shape (C, O/G, kh, kw) (PyTorch's layout: input channels first) and input
channel c in group g = c // (C/G):

    y[n, g*O/G + o, oy, ox] = b[g*O/G + o] + sum over c in group g, iy, ix, ky, kx with
                              oy = iy*sh - ph + ky*dh,  ox = ix*sw - pw + kx*dw  of
                              w[c, o, ky, kx] * x[n, c, iy, ix]

Shapes:  x (N, C, H, W),  w (C, O/G, kh, kw),  b (O,)  ->  y (N, O, Ho, Wo)
         Ho = (H - 1)*sh - 2*ph + dh*(kh - 1) + output_padding_h + 1        (Wo the same)

output_padding. Several output sizes convolve back to the same H (stride 2 maps both 7 and 8
rows to 4); output_padding (< max(stride, dilation)) picks the larger ones by adding rows and
columns at the bottom/right, which receive only the bias unless the kernel reaches them.
When output_padding >= stride (possible with dilation), the convolution of the output would
have more rows than x: we append zero rows/columns to x so the pieces above line up.

On the cuda backend the three pieces are the implicit-GEMM kernels (``cuda/implicit_gemm.py``;
the forward is their data gradient, split by stride phase so that a stride-2 4x4 kernel
multiplies the 4 taps that reach each output pixel, not all 16), or im2col + cuBLAS with
``ops.conv.CUDA_IMPLICIT_GEMM`` off.

Upsampling in FCN: kernel 2f, stride f, padding f/2, weights from ``nn.init.bilinear_`` (each
class channel upsampled on its own) is bilinear interpolation by a factor f.
"""

from __future__ import annotations

from minisegnet.arrays import array_module
from minisegnet.autograd import Function
from minisegnet.ops.conv import (
    bias_grad,
    check_geometry,
    check_tensors,
    conv2d_data_grad,
    conv2d_gemm,
    conv2d_weight_grad,
)
from minisegnet.ops.geometry import conv_output_size_2d, conv_transpose_output_size, pair

__all__ = ["ConvTranspose2d", "conv_transpose_output_size", "check_conv_transpose2d_args"]


def check_conv_transpose2d_args(x, w, b, stride, padding, output_padding, groups, dilation):
    """Validate; return (stride, padding, output_padding, dilation, groups, out_size)."""
    op = "conv_transpose2d"
    stride, padding, dilation, groups = check_geometry(op, stride, padding, dilation, groups)
    output_padding = pair(op, "output_padding", output_padding)
    out_channels = w.shape[1] * groups if w.ndim == 4 else -1
    check_tensors(op, x, w, b, out_channels)
    c = x.shape[1]
    if c != w.shape[0]:
        raise ValueError(
            f"{op}: input has {c} channels but weight of shape {tuple(w.shape)} expects "
            f"weight.shape[0] = {w.shape[0]} (the weight is (in_channels, out_channels/groups, "
            "kh, kw))"
        )
    if c % groups:
        raise ValueError(f"{op}: input channels ({c}) must be divisible by groups={groups}")
    for i, axis in enumerate("hw"):
        limit = max(stride[i], dilation[i])
        if not 0 <= output_padding[i] < limit:
            raise ValueError(
                f"{op}: output_padding must satisfy 0 <= output_padding < max(stride, "
                f"dilation) = {limit} along {axis}, got output_padding={output_padding}"
            )
    out_size = tuple(
        conv_transpose_output_size(
            x.shape[2 + i], w.shape[2 + i], stride[i], padding[i], dilation[i], output_padding[i]
        )
        for i in (0, 1)
    )
    if min(out_size) < 1:
        raise ValueError(
            f"{op}: the output size {out_size} is not positive (input {tuple(x.shape[2:])}, "
            f"kernel {tuple(w.shape[2:])}, stride {stride}, padding {padding}, dilation "
            f"{dilation}, output_padding {output_padding}); reduce padding"
        )
    return stride, padding, output_padding, dilation, groups, out_size


class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, w) + b; see the module docstring. ``b`` may be None."""

    def forward(self, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        stride, padding, output_padding, dilation, groups, out_size = check_conv_transpose2d_args(
            x, w, b, stride, padding, output_padding, groups, dilation
        )
        xp = array_module(x)
        kernel = tuple(w.shape[2:])
        # rows and columns a convolution of the output would have (>= x's when
        # output_padding >= stride)
        grid = conv_output_size_2d(out_size, kernel, stride, padding, dilation)
        in_size = tuple(x.shape[2:])
        if grid != in_size:  # output_padding >= stride: zero rows/columns after the last ones
            extra = ((0, 0), (0, 0), (0, grid[0] - in_size[0]), (0, grid[1] - in_size[1]))
            x = xp.pad(x, extra)
        x = xp.ascontiguousarray(x)
        y = conv2d_data_grad(x, w, out_size, stride, padding, dilation, groups)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        self.save(
            x=x, w=w, has_bias=b is not None, in_size=in_size, stride=stride, padding=padding,
            dilation=dilation, groups=groups,
        )  # fmt: skip
        return y

    def backward(self, dy):
        s = self.saved
        xp = array_module(dy)
        dy = xp.ascontiguousarray(dy)
        geometry = (s.stride, s.padding, s.dilation, s.groups)
        dx = dw = None
        if self.needs_grad[0]:
            dx = conv2d_gemm(dy, s.w, *geometry)  # (N, C, grid h, grid w)
            H, W = s.in_size
            if dx.shape[2:] != (H, W):
                dx = xp.ascontiguousarray(dx[:, :, :H, :W])
        if self.needs_grad[1]:
            # conv2d's weight gradient with the roles swapped: dy is the convolution's input,
            # x the gradient of its output; the result has the shape of w, (C, O/G, kh, kw).
            dw = conv2d_weight_grad(dy, s.x, tuple(s.w.shape[2:]), *geometry)
        if not s.has_bias:
            return dx, dw
        db = bias_grad(dy) if self.needs_grad[2] else None
        return dx, dw, db
