// interpolate.cu: bilinear and nearest resizing of (N, C, H, W) maps, forward and backward,
// with PyTorch's coordinate rules. Launched by minisegnet/cuda/interpolate.py.
//
// Output row oy reads input rows computed from a ratio r (passed in by the wrapper):
//   bilinear, align_corners=True:   src = r * oy,                r = (Hi-1)/(Ho-1) (0 if Ho == 1)
//   bilinear, align_corners=False:  src = max(r * (oy + 0.5) - 0.5, 0),
//                                   r = the caller's scale (1/scale_factor) if given, else Hi/Ho
//   then  h0 = min(floor(src), Hi-1),  h1 = h0 + (h0 < Hi-1),  l1 = clamp(src - h0, 0, 1),
//         l0 = 1 - l1,  and when Ho == Hi the rows are copied (h0 = h1 = oy, l0 = 1, l1 = 0).
//   nearest: src = oy if Ho == Hi;  oy / 2 if Ho == 2*Hi;  else min(floor(oy * r), Hi-1),
//            with r and oy * r in float for every T (as PyTorch does, so the indices agree).
// Columns likewise. y = l0h*(l0w*x[h0,w0] + l1w*x[h0,w1]) + l1h*(l0w*x[h1,w0] + l1w*x[h1,w1]).
//
// Forward: one thread per output pixel. Backward: one thread per INPUT pixel, gathering from
// the output pixels whose taps read it (no atomics). The source index is monotone in the output
// index, so the output rows reading input row iy form one contiguous run, found by a binary
// search for its first row and ended when the taps move past iy.

#include "common.cuh"

template <typename T>
struct Taps {
    int i0, i1;  // the two input indices read
    T l0, l1;    // their weights
};

template <typename T>
__device__ __forceinline__ Taps<T> bilinear_taps(int dst, int in_size, int out_size, T r,
                                                 int align_corners)
{
    Taps<T> t;
    if (out_size == in_size) {  // a copy, exactly
        t.i0 = t.i1 = dst;
        t.l0 = 1;
        t.l1 = 0;
        return t;
    }
    T src = align_corners ? r * (T)dst : r * ((T)dst + (T)0.5) - (T)0.5;
    if (src < 0) src = 0;
    t.i0 = min((int)cu_floor(src), in_size - 1);
    t.i1 = t.i0 + (t.i0 < in_size - 1 ? 1 : 0);
    T l1 = src - (T)t.i0;
    t.l1 = l1 < 0 ? (T)0 : (l1 > 1 ? (T)1 : l1);
    t.l0 = (T)1 - t.l1;
    return t;
}

// The weight with which output index dst reads input index i (0 if it does not).
template <typename T>
__device__ __forceinline__ T tap_weight(const Taps<T>& t, int i)
{
    return (t.i0 == i ? t.l0 : (T)0) + (t.i1 == i ? t.l1 : (T)0);
}

// The first output index whose first tap i0 is >= target (out_size if none): binary search
// over the monotone i0.
template <typename T>
__device__ int first_output_reading(int target, int in_size, int out_size, T r, int align_corners)
{
    int lo = 0, hi = out_size;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (bilinear_taps<T>(mid, in_size, out_size, r, align_corners).i0 < target) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// bilinear_forward: one thread per output element y[n, c, oy, ox].
//   i = ((n*C + c)*Ho + oy)*Wo + ox;  it writes y[i] only: race-free.
template <typename T>
__global__ void bilinear_forward(const T* __restrict__ x, T* __restrict__ y, int N, int C, int Hi,
                                 int Wi, int Ho, int Wo, int align_corners, T rh, T rw)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Ho * Wo) return;
    int oy, ox;
    const T* xp = x + plane_pixel(i, Ho, Wo, &oy, &ox) * Hi * Wi;
    Taps<T> h = bilinear_taps<T>(oy, Hi, Ho, rh, align_corners);
    Taps<T> w = bilinear_taps<T>(ox, Wi, Wo, rw, align_corners);
    const T* row0 = xp + (long long)h.i0 * Wi;
    const T* row1 = xp + (long long)h.i1 * Wi;
    y[i] = h.l0 * (w.l0 * row0[w.i0] + w.l1 * row0[w.i1]) +
           h.l1 * (w.l0 * row1[w.i0] + w.l1 * row1[w.i1]);
}

// bilinear_backward: one thread per input element dx[n, c, iy, ix] (gather):
//   dx[iy, ix] = sum over oy, ox of weight_h(oy -> iy) * weight_w(ox -> ix) * dy[oy, ox]
// where only the output rows with i0 in {iy-1, iy} (and columns likewise) can read (iy, ix).
//   i = ((n*C + c)*Hi + iy)*Wi + ix;  it writes dx[i] only: race-free.
template <typename T>
__global__ void bilinear_backward(const T* __restrict__ dy, T* __restrict__ dx, int N, int C,
                                  int Hi, int Wi, int Ho, int Wo, int align_corners, T rh, T rw)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Hi * Wi) return;
    int iy, ix;
    const T* dyp = dy + plane_pixel(i, Hi, Wi, &iy, &ix) * Ho * Wo;
    int oy0 = first_output_reading<T>(iy - 1, Hi, Ho, rh, align_corners);
    int ox0 = first_output_reading<T>(ix - 1, Wi, Wo, rw, align_corners);
    T sum = 0;
    for (int oy = oy0; oy < Ho; ++oy) {
        Taps<T> h = bilinear_taps<T>(oy, Hi, Ho, rh, align_corners);
        if (h.i0 > iy) break;  // this and every later row reads only rows below iy
        T wy = tap_weight(h, iy);
        if (wy == (T)0) continue;
        for (int ox = ox0; ox < Wo; ++ox) {
            Taps<T> w = bilinear_taps<T>(ox, Wi, Wo, rw, align_corners);
            if (w.i0 > ix) break;
            sum += wy * tap_weight(w, ix) * dyp[(long long)oy * Wo + ox];
        }
    }
    dx[i] = sum;
}

__device__ __forceinline__ int nearest_source(int dst, int in_size, int out_size, float r)
{
    if (out_size == in_size) return dst;
    if (out_size == 2 * in_size) return dst >> 1;
    return min((int)floorf((float)dst * r), in_size - 1);
}

// nearest_forward: one thread per output element y[n, c, oy, ox] (copies one input element).
//   i = ((n*C + c)*Ho + oy)*Wo + ox
template <typename T>
__global__ void nearest_forward(const T* __restrict__ x, T* __restrict__ y, int N, int C, int Hi,
                                int Wi, int Ho, int Wo, float rh, float rw)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Ho * Wo) return;
    int oy, ox;
    const T* xp = x + plane_pixel(i, Ho, Wo, &oy, &ox) * Hi * Wi;
    y[i] = xp[(long long)nearest_source(oy, Hi, Ho, rh) * Wi + nearest_source(ox, Wi, Wo, rw)];
}

// The first output index whose nearest source is >= target (binary search, monotone source).
__device__ int first_nearest_reading(int target, int in_size, int out_size, float r)
{
    int lo = 0, hi = out_size;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (nearest_source(mid, in_size, out_size, r) < target) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// nearest_backward: one thread per input element dx[n, c, iy, ix], gathering the (contiguous)
// block of output pixels that copied it.
//   i = ((n*C + c)*Hi + iy)*Wi + ix
template <typename T>
__global__ void nearest_backward(const T* __restrict__ dy, T* __restrict__ dx, int N, int C,
                                 int Hi, int Wi, int Ho, int Wo, float rh, float rw)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * Hi * Wi) return;
    int iy, ix;
    const T* dyp = dy + plane_pixel(i, Hi, Wi, &iy, &ix) * Ho * Wo;
    int ox0 = first_nearest_reading(ix, Wi, Wo, rw);
    T sum = 0;
    for (int oy = first_nearest_reading(iy, Hi, Ho, rh);
         oy < Ho && nearest_source(oy, Hi, Ho, rh) == iy; ++oy)
        for (int ox = ox0; ox < Wo && nearest_source(ox, Wi, Wo, rw) == ix; ++ox)
            sum += dyp[(long long)oy * Wo + ox];
    dx[i] = sum;
}
