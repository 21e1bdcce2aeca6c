// loss.cu: softmax cross-entropy over the class axis, with class weights and an ignore label.
// Launched by minisegnet/cuda/loss.py.
//
// logits (N, C, HW) (HW = H*W, or 1 for (N, C) logits), target (N, HW) int64, weight (C,).
// At position q = n*HW + p with t = target[q] != ignore_index:
//   log softmax[c] = z[c] - max_c' z[c'] - log(sum_c' exp(z[c'] - max))    (stable)
//   loss[q]   = -weight[t] * log softmax[t],   wpos[q] = weight[t]
//   dlogits[n, c, p] = scale[q] * weight[t] * (softmax[c] - [c == t])
// Ignored positions get loss 0, wpos 0 and dlogits 0. A target outside [0, C) that is not the
// ignore label gives NaN (the Python side rejects such targets before launching).
//
// One thread per POSITION q, not per output element: the C outputs of a position share its
// max and its sum of exponentials, so one thread computes them once and writes the C entries
// of its own position, which no other thread touches: race-free.

#include "common.cuh"

// The stable log-sum-exp pieces of position z[c * HW], c < C.
template <typename T>
__device__ __forceinline__ void softmax_pieces(const T* z, int C, int HW, T* z_max, T* sum_exp)
{
    T m = z[0];
    for (int c = 1; c < C; ++c) m = cu_max(m, z[(long long)c * HW]);
    T s = 0;
    for (int c = 0; c < C; ++c) s += cu_exp(z[(long long)c * HW] - m);
    *z_max = m;
    *sum_exp = s;
}

template <typename T>
__global__ void cross_entropy_forward(const T* __restrict__ logits,
                                      const long long* __restrict__ target,
                                      const T* __restrict__ weight, T* __restrict__ loss,
                                      T* __restrict__ wpos, int N, int C, int HW,
                                      long long ignore_index)
{
    long long q = global_thread_index();
    if (q >= (long long)N * HW) return;
    long long t = target[q];
    if (t == ignore_index) {
        loss[q] = 0;
        wpos[q] = 0;
        return;
    }
    if (t < 0 || t >= C) {
        loss[q] = quiet_nan<T>();
        wpos[q] = quiet_nan<T>();
        return;
    }
    const T* z = logits + (q / HW) * C * HW + q % HW;  // z[c * HW] = logits[n, c, p]
    T z_max, sum_exp;
    softmax_pieces(z, C, HW, &z_max, &sum_exp);
    T log_p = z[t * HW] - z_max - cu_log(sum_exp);
    loss[q] = -weight[t] * log_p;
    wpos[q] = weight[t];
}

template <typename T>
__global__ void cross_entropy_backward(const T* __restrict__ logits,
                                       const long long* __restrict__ target,
                                       const T* __restrict__ weight, const T* __restrict__ scale,
                                       T* __restrict__ dlogits, int N, int C, int HW,
                                       long long ignore_index)
{
    long long q = global_thread_index();
    if (q >= (long long)N * HW) return;
    long long offset = (q / HW) * C * HW + q % HW;
    const T* z = logits + offset;
    T* dz = dlogits + offset;
    long long t = target[q];
    if (t == ignore_index || t < 0 || t >= C) {
        T fill = t == ignore_index ? (T)0 : quiet_nan<T>();
        for (int c = 0; c < C; ++c) dz[(long long)c * HW] = fill;
        return;
    }
    T z_max, sum_exp;
    softmax_pieces(z, C, HW, &z_max, &sum_exp);
    T g = scale[q] * weight[t];
    for (int c = 0; c < C; ++c) {
        T softmax = cu_exp(z[(long long)c * HW] - z_max) / sum_exp;
        dz[(long long)c * HW] = g * (softmax - (c == t ? (T)1 : (T)0));
    }
}
