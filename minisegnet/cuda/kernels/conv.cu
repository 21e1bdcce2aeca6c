// conv.cu: im2col and col2im, the data movement that turns a convolution into a matrix product.
//
//   cols[b, (c*kh + ky)*kw + kx, oy*Wo + ox] = x[b, c, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw]
//                                              (0 where that position is in the padding)
//
// Shapes:  x (B, C, H, W)  <->  cols (B, C*kh*kw, Ho*Wo)
//          Ho = (H + 2*ph - dh*(kh-1) - 1) / sh + 1,  Wo likewise.
// A convolution is then y[b] (Co, Ho*Wo) = w (Co, C*kh*kw) @ cols[b] (a cuBLAS GEMM through
// cupy.matmul); its input gradient is dx = col2im(w^T @ dy), the adjoint of im2col.
// Launched by minisegnet/cuda/conv.py.

#include "common.cuh"

// im2col: one thread per element of cols (the destination).
//   i = ((b*C*kh*kw + row)*Ho + oy)*Wo + ox,  row = (c*kh + ky)*kw + kx
// Each thread writes only cols[i], so no two threads write the same address: race-free.
// Neighbouring threads write neighbouring addresses (ox fastest), so the writes coalesce.
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols,
                       int B, int C, int H, int W, int kh, int kw, int sh, int sw,
                       int ph, int pw, int dh, int dw, int Ho, int Wo)
{
    long long i = global_thread_index();
    long long total = (long long)B * C * kh * kw * Ho * Wo;
    if (i >= total) return;

    int ox = (int)(i % Wo);
    long long rest = i / Wo;
    int oy = (int)(rest % Ho);
    rest /= Ho;
    int kx = (int)(rest % kw);
    rest /= kw;
    int ky = (int)(rest % kh);
    rest /= kh;
    int c = (int)(rest % C);
    int b = (int)(rest / C);

    int iy = oy * sh - ph + ky * dh;  // the input pixel this tap of window (oy, ox) reads
    int ix = ox * sw - pw + kx * dw;
    T value = 0;  // zero padding
    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
        value = x[(((long long)b * C + c) * H + iy) * W + ix];
    cols[i] = value;
}

// col2im: one thread per input pixel x[b, c, iy, ix] (the destination), GATHERING every entry
// of cols that im2col copied from this pixel:
//   tap (ky, kx) of window (oy, ox) reads (iy, ix) when iy = oy*sh - ph + ky*dh, i.e. when
//   iy + ph - ky*dh is a non-negative multiple of sh (then oy = (iy + ph - ky*dh) / sh < Ho).
//   i = ((b*C + c)*H + iy)*W + ix
// Each thread sums into a register and writes only x[i]: no atomics, race-free, and the sum is
// taken in the same order every run (deterministic), unlike a scatter with atomicAdd.
template <typename T>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ x,
                       int B, int C, int H, int W, int kh, int kw, int sh, int sw,
                       int ph, int pw, int dh, int dw, int Ho, int Wo)
{
    long long i = global_thread_index();
    long long total = (long long)B * C * H * W;
    if (i >= total) return;

    int ix = (int)(i % W);
    int iy = (int)((i / W) % H);
    long long plane = i / ((long long)H * W);  // = b*C + c

    // cols[b] row (c*kh + ky)*kw + kx starts at ((b*C + c)*kh*kw + ky*kw + kx) * Ho*Wo
    const T* cols_c = cols + plane * kh * kw * (long long)Ho * Wo;
    T sum = 0;
    for (int ky = 0; ky < kh; ++ky) {
        int ty = iy + ph - ky * dh;  // = oy * sh if this tap lands on row iy
        if (ty < 0 || ty % sh != 0) continue;
        int oy = ty / sh;
        if (oy >= Ho) continue;
        for (int kx = 0; kx < kw; ++kx) {
            int tx = ix + pw - kx * dw;
            if (tx < 0 || tx % sw != 0) continue;
            int ox = tx / sw;
            if (ox >= Wo) continue;
            sum += cols_c[((long long)(ky * kw + kx) * Ho + oy) * Wo + ox];
        }
    }
    x[i] = sum;
}
