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

The arguments are checked once, by ``functional.conv_transpose2d``
(``geometry.check_conv_transpose2d``); this file trusts them.
"""

from __future__ import annotations

from minisegnet.arrays import array_module
from minisegnet.autograd import Function
from minisegnet.ops.conv import (
    conv2d_data_grad,
    conv2d_forward_and_weight_grad,
    conv2d_gemm,
    conv2d_weight_grad,
    with_bias_grad,
)
from minisegnet.ops.geometry import (
    conv_output_size_2d,
    conv_transpose_output_size,
    conv_transpose_output_size_2d,
)

__all__ = ["ConvTranspose2d", "conv_transpose_output_size"]


class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, w) + b; see the module docstring. ``b`` may be None. Arguments as
    ``geometry.check_conv_transpose2d`` returns them: (h, w) pairs and an int ``groups``."""

    def forward(self, x, w, b, stride, padding, output_padding, groups, dilation):
        xp = array_module(x)
        kernel = tuple(w.shape[2:])
        in_size = tuple(x.shape[2:])
        out_size = conv_transpose_output_size_2d(
            in_size, kernel, stride, padding, dilation, output_padding
        )
        # rows and columns a convolution of the output would have (>= x's when
        # output_padding >= stride)
        grid = conv_output_size_2d(out_size, kernel, stride, padding, dilation)
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
        # dw is conv2d's weight gradient with the roles swapped: dy is the convolution's input,
        # x the gradient of its output; the result has the shape of w, (C, O/G, kh, kw).
        if self.needs_grad[0] and self.needs_grad[1]:
            dx, dw = conv2d_forward_and_weight_grad(dy, s.w, s.x, *geometry)
        elif self.needs_grad[0]:
            dx = conv2d_gemm(dy, s.w, *geometry)  # (N, C, grid h, grid w)
        elif self.needs_grad[1]:
            dw = conv2d_weight_grad(dy, s.x, tuple(s.w.shape[2:]), *geometry)
        if dx is not None and dx.shape[2:] != tuple(s.in_size):
            H, W = s.in_size
            dx = xp.ascontiguousarray(dx[:, :, :H, :W])
        return with_bias_grad(self, dy, dx, dw)
