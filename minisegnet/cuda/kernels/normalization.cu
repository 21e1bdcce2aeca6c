// normalization.cu: batch normalization (per-channel statistics, forward, backward), local
// response normalization (LRN) across channels, and dropout masks.
// Launched by minisegnet/cuda/normalization.py.
//
// Layout: x (N, C, HW) with HW = H*W (1 for a (N, C) input); element (n, c, p) is at
// (n*C + c)*HW + p. Batch norm reduces over (n, p) for each channel c: M = N*HW values.

#include "common.cuh"

// ---------------------------------------------------------------------------- block reduction
// block_sum: the sum of `value` over all threads of the block, returned to every thread.
//
// The lesson of this file. Threads of one block share fast on-chip memory (__shared__), and
// __syncthreads() is a barrier no thread of the block passes until all have reached it. A tree
// reduction over blockDim.x (a power of two) values then takes log2(blockDim.x) steps:
//
//   partial: [a0 a1 a2 a3 a4 a5 a6 a7]          every thread t stores its value at partial[t]
//   half=4:  [a0+a4 a1+a5 a2+a6 a3+a7 ...]      threads t < 4 add partial[t + 4]
//   half=2:  [a0+a4+a2+a6  a1+a5+a3+a7 ...]     threads t < 2 add partial[t + 2]
//   half=1:  [total ...]                        thread 0 adds partial[1]
//
// Each step reads values the previous step wrote, hence the __syncthreads() between steps:
// without it a thread could read partial[t + half] before its owner has written it. Within a
// step, thread t writes only partial[t] and reads partial[t + half], which no thread writes in
// that step: race-free. The last __syncthreads() makes everyone read the total before the
// buffer is used again. EVERY thread of the block must call block_sum (a barrier that some
// threads skip hangs or corrupts the block), so callers never return early before it.
//
// partial: blockDim.x doubles of dynamic shared memory (sized at launch).
__device__ double block_sum(double value, double* partial)
{
    unsigned int t = threadIdx.x;
    partial[t] = value;
    __syncthreads();
    for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    double total = partial[0];
    __syncthreads();
    return total;
}

// The j-th of channel c's M = N*HW values, element (n, c, p) with j = n*HW + p: its offset
// (n*C + c)*HW + p. The one-block-per-channel kernels walk j = t, t + blockDim.x, ... with it.
__device__ __forceinline__ long long channel_value(long long j, int c, int C, int HW)
{
    return ((j / HW) * C + c) * HW + j % HW;
}

// batch_norm_stats: mean and biased variance of each channel. One BLOCK per channel
// (blockIdx.x = c); thread t of the block visits elements j = t, t + blockDim.x, ... of the
// channel's M values (a block-stride loop), then the block combines its threads' partial sums
// with block_sum. Two passes (mean, then the mean squared deviation) avoid the cancellation of
// E[x^2] - E[x]^2. Sums are accumulated in double for float and double inputs alike.
// Only thread 0 writes, and only mean[c], var[c] of its own channel: race-free.
template <typename T>
__global__ void batch_norm_stats(const T* __restrict__ x, T* __restrict__ mean, T* __restrict__ var,
                                 int N, int C, int HW)
{
    extern __shared__ unsigned char shared_raw[];
    double* partial = reinterpret_cast<double*>(shared_raw);  // blockDim.x doubles
    int c = blockIdx.x;
    long long M = (long long)N * HW;

    double sum = 0;
    for (long long j = threadIdx.x; j < M; j += blockDim.x)
        sum += (double)x[channel_value(j, c, C, HW)];
    double m = block_sum(sum, partial) / (double)M;

    double squares = 0;
    for (long long j = threadIdx.x; j < M; j += blockDim.x) {
        double d = (double)x[channel_value(j, c, C, HW)] - m;
        squares += d * d;
    }
    double v = block_sum(squares, partial) / (double)M;

    if (threadIdx.x == 0) {
        mean[c] = (T)m;
        var[c] = (T)v;
    }
}

// xhat = (v - mean[c]) * invstd[c]: value v of channel c normalised (the forward's and both
// backward kernels' common term).
template <typename T>
__device__ __forceinline__ T normalised(T v, const T* mean, const T* invstd, int c)
{
    return (v - mean[c]) * invstd[c];
}

// batch_norm_forward: y = (x - mean[c]) * invstd[c] * weight[c] + bias[c].
// One thread per element, i = (n*C + c)*HW + p, writing y[i] only.
template <typename T>
__global__ void batch_norm_forward(const T* __restrict__ x, const T* __restrict__ mean,
                                   const T* __restrict__ invstd, const T* __restrict__ weight,
                                   const T* __restrict__ bias, T* __restrict__ y, int N, int C,
                                   int HW)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * HW) return;
    int c = (int)((i / HW) % C);
    y[i] = normalised(x[i], mean, invstd, c) * weight[c] + bias[c];
}

// batch_norm_backward_reduce: per channel, dbias[c] = sum dy and dweight[c] = sum dy * xhat
// with xhat = (x - mean) * invstd. One block per channel, as in batch_norm_stats.
template <typename T>
__global__ void batch_norm_backward_reduce(const T* __restrict__ dy, const T* __restrict__ x,
                                           const T* __restrict__ mean, const T* __restrict__ invstd,
                                           T* __restrict__ dweight, T* __restrict__ dbias, int N,
                                           int C, int HW)
{
    extern __shared__ unsigned char shared_raw[];
    double* partial = reinterpret_cast<double*>(shared_raw);
    int c = blockIdx.x;
    long long M = (long long)N * HW;
    double sum_dy = 0, sum_dy_xhat = 0;
    for (long long j = threadIdx.x; j < M; j += blockDim.x) {
        long long k = channel_value(j, c, C, HW);
        double g = (double)dy[k];
        sum_dy += g;
        sum_dy_xhat += g * (double)normalised(x[k], mean, invstd, c);
    }
    double db = block_sum(sum_dy, partial);
    double dw = block_sum(sum_dy_xhat, partial);
    if (threadIdx.x == 0) {
        dbias[c] = (T)db;
        dweight[c] = (T)dw;
    }
}

// batch_norm_backward_dx (training mode; mean and invstd depend on x):
//   dx = weight*invstd * (dy - dbias/M - xhat * dweight/M)
// One thread per element, i = (n*C + c)*HW + p, writing dx[i] only.
template <typename T>
__global__ void batch_norm_backward_dx(const T* __restrict__ dy, const T* __restrict__ x,
                                       const T* __restrict__ mean, const T* __restrict__ invstd,
                                       const T* __restrict__ weight, const T* __restrict__ dweight,
                                       const T* __restrict__ dbias, T* __restrict__ dx, int N,
                                       int C, int HW)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * HW) return;
    int c = (int)((i / HW) % C);
    T M = (T)((long long)N * HW);
    T xhat = normalised(x[i], mean, invstd, c);
    dx[i] = weight[c] * invstd[c] * (dy[i] - dbias[c] / M - xhat * (dweight[c] / M));
}

// ---------------------------------------------------------------------------- LRN
// PyTorch's local response normalization across channels, window [c - size/2, c + (size-1)/2]:
//   scale[n, c, p] = k + alpha/size * (sum over the window of x[n, c', p]^2)
//   y = x * scale^-beta
// One thread per element, i = (n*C + c)*HW + p, writing y[i] and scale[i] only.
template <typename T>
__global__ void lrn_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ scale,
                            int N, int C, int HW, int size, T alpha, T beta, T k)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * HW) return;
    int c, p;  // i = (n*C + c)*HW + p: an (N, C, HW) array is a stack of N (C, HW) planes
    const T* xn = x + plane_pixel(i, C, HW, &c, &p) * C * HW + p;  // x[n, 0, p]; stride HW
    T sum = 0;
    for (int j = max(c - size / 2, 0); j <= min(c + (size - 1) / 2, C - 1); ++j) {
        T v = xn[(long long)j * HW];
        sum += v * v;
    }
    T s = k + alpha / (T)size * sum;
    scale[i] = s;
    y[i] = x[i] * cu_pow(s, -beta);
}

// lrn_backward (gather over the windows that contain channel c, i.e. c' in
// [c - (size-1)/2, c + size/2]):
//   dx[c] = dy[c] * scale[c]^-beta - (2*alpha*beta/size) * x[c] * sum_c' dy[c'] * y[c'] / scale[c']
// One thread per element, i = (n*C + c)*HW + p, writing dx[i] only.
template <typename T>
__global__ void lrn_backward(const T* __restrict__ dy, const T* __restrict__ x,
                             const T* __restrict__ y, const T* __restrict__ scale,
                             T* __restrict__ dx, int N, int C, int HW, int size, T alpha, T beta)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C * HW) return;
    int c, p;
    long long base = plane_pixel(i, C, HW, &c, &p) * C * HW + p;  // (n, 0, p)
    T sum = 0;
    for (int j = max(c - (size - 1) / 2, 0); j <= min(c + size / 2, C - 1); ++j) {
        long long o = base + (long long)j * HW;
        sum += dy[o] * y[o] / scale[o];
    }
    dx[i] = dy[i] * cu_pow(scale[i], -beta) - (T)2 * alpha * beta / (T)size * x[i] * sum;
}

// ---------------------------------------------------------------------------- dropout
// dropout_mask: mask[i] = (u_i >= p) / (1 - p) with u_i = hash(seed, i) in [0, 1): SplitMix64's
// output function on the counter i (unsigned 64-bit arithmetic wraps, as in C). The same
// formula runs on every backend, so the masks agree bit for bit. One thread per mask element.
template <typename T>
__global__ void dropout_mask(T* __restrict__ mask, long long count, unsigned long long seed,
                             double p, double keep_scale)
{
    long long i = global_thread_index();
    if (i >= count) return;
    unsigned long long z = seed + ((unsigned long long)i + 1ULL) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    double u = (double)(z >> 40) * 5.9604644775390625e-08;  // 24 random bits * 2^-24
    mask[i] = u >= p ? (T)keep_scale : (T)0;
}
