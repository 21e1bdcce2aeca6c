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

// Position q = n*HW + p of target: the offset of logits[n, 0, p]; class c lies c*HW further.
__device__ __forceinline__ long long position_offset(long long q, int C, int HW)
{
    return (q / HW) * C * HW + q % HW;
}

// The gradient of one position, dz[c * HW] = g * (softmax[c] - [c == t]) for c < C, with
// softmax[c] = exp(z[c * HW] - z_max) * inv_sum (inv_sum = 1 / sum of the exponentials).
template <typename T>
__device__ __forceinline__ void softmax_gradient(const T* z, T* dz, int C, int HW, long long t,
                                                 T g, T z_max, T inv_sum)
{
    for (int c = 0; c < C; ++c) {
        T softmax = cu_exp(z[(long long)c * HW] - z_max) * inv_sum;
        dz[(long long)c * HW] = g * (softmax - (c == t ? (T)1 : (T)0));
    }
}

// A position without a class to learn: its C gradient entries (and its loss and weight) are
// 0 when t is the ignore label, NaN when t is outside [0, C). Returns that value.
template <typename T>
__device__ __forceinline__ T fill_unlabelled(T* dz, int C, int HW, long long t,
                                             long long ignore_index)
{
    T fill = t == ignore_index ? (T)0 : quiet_nan<T>();
    for (int c = 0; c < C; ++c) dz[(long long)c * HW] = fill;
    return fill;
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
    const T* z = logits + position_offset(q, C, HW);  // z[c * HW] = logits[n, c, p]
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
    long long offset = position_offset(q, C, HW);
    const T* z = logits + offset;
    T* dz = dlogits + offset;
    long long t = target[q];
    if (t == ignore_index || t < 0 || t >= C) {
        fill_unlabelled(dz, C, HW, t, ignore_index);
        return;
    }
    T z_max, sum_exp;
    softmax_pieces(z, C, HW, &z_max, &sum_exp);
    softmax_gradient(z, dz, C, HW, t, scale[q] * weight[t], z_max, (T)1 / sum_exp);
}

// ---------------------------------------------------------------------------------------------
// cross_entropy_fused: softmax, loss and (unscaled) gradient in ONE pass per position, plus each
// block's partial sums of the loss and of the weights. Replaces, while training, the forward
// above + two reductions + the backward (which re-read the logits and recomputed the softmax).
//
//   grad[n, c, p] = weight[t] * (softmax[c] - [c == t])      (0 at ignored positions)
//   partial[blockIdx.x] = (sum of loss[q], sum of wpos[q]) over the block's positions
//
// The backward is then grad * scale (one elementwise product), whatever the reduction.
// The max and the sum of exponentials are taken in a single sweep over the classes (online
// softmax: when the running max grows from m to m', the running sum is rescaled by exp(m - m')),
// then a second sweep writes the gradient: two reads of the position's logits (the second from
// cache), one write, instead of the three reads and two kernels of forward + backward.
// Partial sums: a tree in shared memory (blockDim.x a power of two, at most 1024), one slot per
// block, summed by the wrapper: deterministic (no atomics). Launch: 1-D, blockDim.x threads.
template <typename T>
__global__ void cross_entropy_fused(const T* __restrict__ logits,
                                    const long long* __restrict__ target,
                                    const T* __restrict__ weight, T* __restrict__ loss,
                                    T* __restrict__ wpos, T* __restrict__ grad,
                                    T* __restrict__ partial, int N, int C, int HW,
                                    long long ignore_index)
{
    __shared__ T sums[2][1024];
    long long q = global_thread_index();
    T my_loss = 0, my_w = 0;
    if (q < (long long)N * HW) {
        long long offset = position_offset(q, C, HW);
        const T* z = logits + offset;
        T* dz = grad + offset;
        long long t = target[q];
        if (t == ignore_index || t < 0 || t >= C) {
            my_loss = my_w = fill_unlabelled(dz, C, HW, t, ignore_index);
        } else {
            T m = z[0], s = 1;  // online softmax: running max, sum of exp(z - m)
            for (int c = 1; c < C; ++c) {
                T v = z[(long long)c * HW];
                if (v > m) {
                    s = s * cu_exp(m - v) + 1;
                    m = v;
                } else {
                    s += cu_exp(v - m);
                }
            }
            T wt = weight[t];
            softmax_gradient(z, dz, C, HW, t, wt, m, (T)1 / s);
            my_loss = -wt * (z[t * HW] - m - cu_log(s));
            my_w = wt;
        }
        loss[q] = my_loss;
        wpos[q] = my_w;
    }
    sums[0][threadIdx.x] = my_loss;
    sums[1][threadIdx.x] = my_w;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) {
            sums[0][threadIdx.x] += sums[0][threadIdx.x + half];
            sums[1][threadIdx.x] += sums[1][threadIdx.x + half];
        }
        __syncthreads();  // this level complete before the next reads it
    }
    if (threadIdx.x == 0) {
        partial[2 * (long long)blockIdx.x] = sums[0][0];
        partial[2 * (long long)blockIdx.x + 1] = sums[1][0];
    }
}
