// pooling.cu: max pooling with switches, max unpooling, average and adaptive average pooling,
// forward and backward. Launched by minisegnet/cuda/pooling.py.
//
// Geometry (all kernels): x (N, C, H, W) -> y (N, C, Ho, Wo). Window (oy, ox) covers input rows
// oy*sh - ph .. oy*sh - ph + kh - 1 and columns ox*sw - pw .. ox*sw - pw + kw - 1; positions in
// the padding are skipped (for max pooling they count as -infinity, never chosen).
// Switches (idx): the position of the maximum inside its window, ky*kw + kx (row-major), stored
// as I = unsigned char when kh*kw <= 256, else int. Ties: the first maximum in row-major order
// (a later value must be strictly greater to win); a NaN wins over any number.
//
// Every thread below handles one element of its kernel's OUTPUT array, computes it in
// registers and writes only that element, so no two threads write the same address. The
// backward passes are written as gathers (one thread per input pixel, reading every output
// whose window covers it) rather than scatters with atomicAdd: deterministic and race-free
// even when windows overlap (stride < kernel). The one scatter, max_unpool2d_forward, says why
// it is safe.

#include "common.cuh"

// Windows whose rows cover input row iy: oy*s - p <= iy <= oy*s - p + k - 1, clipped to [0, O).
__device__ __forceinline__ int first_window(int i, int k, int s, int p)
{
    int t = i + p - k + 1;  // smallest oy*s allowed
    return t <= 0 ? 0 : (t + s - 1) / s;
}
__device__ __forceinline__ int last_window(int i, int s, int p, int out)
{
    return min((i + p) / s, out - 1);  // i + p >= 0 always
}

// max_pool2d_forward: one thread per output element y[n, c, oy, ox].
//   i = ((n*C + c)*Ho + oy)*Wo + ox
template <typename T, typename I>
__global__ void max_pool2d_forward(const T* __restrict__ x, T* __restrict__ y, I* __restrict__ idx,
                                   int N, int C, int H, int W, int Ho, int Wo,
                                   int kh, int kw, int sh, int sw, int ph, int pw)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Ho * Wo) return;
    int oy, ox;
    const T* xp = x + plane_pixel(i, Ho, Wo, &oy, &ox) * H * W;  // x[n, c]

    int y0 = oy * sh - ph, x0 = ox * sw - pw;  // the window's top-left corner (may be padding)
    T best = 0;
    int best_k = 0;
    bool found = false;  // false only if the whole window lies in the padding
    for (int ky = 0; ky < kh; ++ky) {
        int iy = y0 + ky;
        if (iy < 0 || iy >= H) continue;
        for (int kx = 0; kx < kw; ++kx) {
            int ix = x0 + kx;
            if (ix < 0 || ix >= W) continue;
            T v = xp[(long long)iy * W + ix];
            if (!found || v > best || (is_nan(v) && !is_nan(best))) {  // strict >: first max wins
                best = v;
                best_k = ky * kw + kx;
                found = true;
            }
        }
    }
    y[i] = best;
    idx[i] = (I)best_k;
}

// max_pool2d_backward: one thread per INPUT pixel dx[n, c, iy, ix] (gather).
//   i = ((n*C + c)*H + iy)*W + ix
// dx = sum of dy[oy, ox] over the windows covering (iy, ix) whose switch points at (iy, ix).
template <typename T, typename I>
__global__ void max_pool2d_backward(const T* __restrict__ dy, const I* __restrict__ idx,
                                    T* __restrict__ dx, int N, int C, int H, int W, int Ho, int Wo,
                                    int kh, int kw, int sh, int sw, int ph, int pw)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * H * W) return;
    int iy, ix;
    long long plane = plane_pixel(i, H, W, &iy, &ix);
    const T* dyp = dy + plane * Ho * Wo;
    const I* idxp = idx + plane * Ho * Wo;

    T sum = 0;
    int oy_end = last_window(iy, sh, ph, Ho), ox_end = last_window(ix, sw, pw, Wo);
    for (int oy = first_window(iy, kh, sh, ph); oy <= oy_end; ++oy) {
        int ky = iy - (oy * sh - ph);  // our row inside window (oy, ox)
        for (int ox = first_window(ix, kw, sw, pw); ox <= ox_end; ++ox) {
            int kx = ix - (ox * sw - pw);
            long long o = (long long)oy * Wo + ox;
            if ((int)idxp[o] == ky * kw + kx) sum += dyp[o];
        }
    }
    dx[i] = sum;
}

// The pixel of the unpooled (H, W) plane that switch k of pooled element (py, px) names:
// row py*sh - ph + k/kw, column px*sw - pw + k%kw (window (py, px)'s tap k), as the flat offset
// row*W + column inside the plane; -1 when k is no tap of a kh x kw window or the pixel lies
// outside the plane (in the padding), so that the caller neither reads nor writes it.
__device__ __forceinline__ long long switch_target(int k, int py, int px, int H, int W, int kh,
                                                   int kw, int sh, int sw, int ph, int pw)
{
    if (k < 0 || k >= kh * kw) return -1;
    int oy = py * sh - ph + k / kw;
    int ox = px * sw - pw + k % kw;
    if (oy < 0 || oy >= H || ox < 0 || ox >= W) return -1;
    return (long long)oy * W + ox;
}

// max_unpool2d_forward: y (zeroed by the caller) gets each x[n, c, py, px] placed where its
// switch points. One thread per element of x (the pooled map, N, C, Hp, Wp):
//   i = ((n*C + c)*Hp + py)*Wp + px
// This is a scatter. It is race-free when windows do not overlap (stride >= kernel, as in
// SegNet's 2x2/2): then different x elements land in different windows, hence different y
// elements. With overlapping windows two switches can name the same pixel; both threads write
// there and one value wins, unpredictably on a GPU (PyTorch's max_unpool2d behaves the same).
// A switch that falls outside y (or outside its window) is skipped, never written.
template <typename T, typename I>
__global__ void max_unpool2d_forward(const T* __restrict__ x, const I* __restrict__ idx,
                                     T* __restrict__ y, int N, int C, int Hp, int Wp, int H, int W,
                                     int kh, int kw, int sh, int sw, int ph, int pw)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Hp * Wp) return;
    int py, px;
    long long plane = plane_pixel(i, Hp, Wp, &py, &px);
    long long o = switch_target((int)idx[i], py, px, H, W, kh, kw, sh, sw, ph, pw);
    if (o >= 0) y[plane * H * W + o] = x[i];
}

// max_unpool2d_backward: one thread per element of dx (the pooled map), gathering the one
// element of dy its switch points at (0 if that is outside dy).
//   i = ((n*C + c)*Hp + py)*Wp + px
template <typename T, typename I>
__global__ void max_unpool2d_backward(const T* __restrict__ dy, const I* __restrict__ idx,
                                      T* __restrict__ dx, int N, int C, int Hp, int Wp, int H,
                                      int W, int kh, int kw, int sh, int sw, int ph, int pw)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Hp * Wp) return;
    int py, px;
    long long plane = plane_pixel(i, Hp, Wp, &py, &px);
    long long o = switch_target((int)idx[i], py, px, H, W, kh, kw, sh, sw, ph, pw);
    dx[i] = o >= 0 ? dy[plane * H * W + o] : (T)0;
}

// The divisor of average-pooling window (oy, ox), PyTorch's rule: the window is first clipped
// to the padded input (this only matters for ceil-mode windows hanging past it); with
// count_include_pad its area counts the padding, otherwise only the pixels inside the input.
__device__ __forceinline__ int avg_divisor(int oy, int ox, int H, int W, int kh, int kw, int sh,
                                           int sw, int ph, int pw, int count_include_pad)
{
    int y0 = oy * sh - ph, x0 = ox * sw - pw;
    int y1 = min(y0 + kh, H + ph), x1 = min(x0 + kw, W + pw);
    if (count_include_pad) return (y1 - y0) * (x1 - x0);
    return (min(y1, H) - max(y0, 0)) * (min(x1, W) - max(x0, 0));
}

// avg_pool2d_forward: one thread per output element y[n, c, oy, ox].
//   i = ((n*C + c)*Ho + oy)*Wo + ox
template <typename T>
__global__ void avg_pool2d_forward(const T* __restrict__ x, T* __restrict__ y, int N, int C,
                                   int H, int W, int Ho, int Wo, int kh, int kw, int sh, int sw,
                                   int ph, int pw, int count_include_pad)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Ho * Wo) return;
    int oy, ox;
    const T* xp = x + plane_pixel(i, Ho, Wo, &oy, &ox) * H * W;
    int y0 = oy * sh - ph, x0 = ox * sw - pw;
    T sum = 0;
    for (int iy = max(y0, 0); iy < min(y0 + kh, H); ++iy)
        for (int ix = max(x0, 0); ix < min(x0 + kw, W); ++ix) sum += xp[(long long)iy * W + ix];
    y[i] = sum / (T)avg_divisor(oy, ox, H, W, kh, kw, sh, sw, ph, pw, count_include_pad);
}

// avg_pool2d_backward: one thread per input pixel dx[n, c, iy, ix] (gather):
// dx = sum over the windows covering (iy, ix) of dy[oy, ox] / divisor(oy, ox).
//   i = ((n*C + c)*H + iy)*W + ix
template <typename T>
__global__ void avg_pool2d_backward(const T* __restrict__ dy, T* __restrict__ dx, int N, int C,
                                    int H, int W, int Ho, int Wo, int kh, int kw, int sh, int sw,
                                    int ph, int pw, int count_include_pad)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * H * W) return;
    int iy, ix;
    const T* dyp = dy + plane_pixel(i, H, W, &iy, &ix) * Ho * Wo;
    T sum = 0;
    int oy_end = last_window(iy, sh, ph, Ho), ox_end = last_window(ix, sw, pw, Wo);
    for (int oy = first_window(iy, kh, sh, ph); oy <= oy_end; ++oy)
        for (int ox = first_window(ix, kw, sw, pw); ox <= ox_end; ++ox)
            sum += dyp[(long long)oy * Wo + ox] /
                   (T)avg_divisor(oy, ox, H, W, kh, kw, sh, sw, ph, pw, count_include_pad);
    dx[i] = sum;
}

// Adaptive average pooling: output bin o of an axis of input size n and output size out
// averages input indices floor(o*n/out) .. ceil((o+1)*n/out) - 1 (PyTorch's bins; they overlap
// when out does not divide n).
__device__ __forceinline__ int bin_start(int o, int n, int out) { return (int)(((long long)o * n) / out); }
__device__ __forceinline__ int bin_end(int o, int n, int out)
{
    return (int)(((long long)(o + 1) * n + out - 1) / out);
}

// adaptive_avg_pool2d_forward: one thread per output element y[n, c, oy, ox].
//   i = ((n*C + c)*Ho + oy)*Wo + ox
template <typename T>
__global__ void adaptive_avg_pool2d_forward(const T* __restrict__ x, T* __restrict__ y, int N,
                                            int C, int H, int W, int Ho, int Wo)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Ho * Wo) return;
    int oy, ox;
    const T* xp = x + plane_pixel(i, Ho, Wo, &oy, &ox) * H * W;
    int y0 = bin_start(oy, H, Ho), y1 = bin_end(oy, H, Ho);
    int x0 = bin_start(ox, W, Wo), x1 = bin_end(ox, W, Wo);
    T sum = 0;
    for (int iy = y0; iy < y1; ++iy)
        for (int ix = x0; ix < x1; ++ix) sum += xp[(long long)iy * W + ix];
    y[i] = sum / (T)((y1 - y0) * (x1 - x0));
}

// adaptive_avg_pool2d_backward: one thread per input pixel dx[n, c, iy, ix] (gather) over the
// bins containing it. The first bin that can contain row iy is floor(iy*Ho/H) (earlier bins
// end at or before iy); bins after it are checked until one starts past iy.
//   i = ((n*C + c)*H + iy)*W + ix
template <typename T>
__global__ void adaptive_avg_pool2d_backward(const T* __restrict__ dy, T* __restrict__ dx, int N,
                                             int C, int H, int W, int Ho, int Wo)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * H * W) return;
    int iy, ix;
    const T* dyp = dy + plane_pixel(i, H, W, &iy, &ix) * Ho * Wo;
    T sum = 0;
    for (int oy = (int)(((long long)iy * Ho) / H); oy < Ho && bin_start(oy, H, Ho) <= iy; ++oy) {
        if (bin_end(oy, H, Ho) <= iy) continue;
        int rows = bin_end(oy, H, Ho) - bin_start(oy, H, Ho);
        for (int ox = (int)(((long long)ix * Wo) / W); ox < Wo && bin_start(ox, W, Wo) <= ix; ++ox) {
            if (bin_end(ox, W, Wo) <= ix) continue;
            int cols = bin_end(ox, W, Wo) - bin_start(ox, W, Wo);
            sum += dyp[(long long)oy * Wo + ox] / (T)(rows * cols);
        }
    }
    dx[i] = sum;
}
