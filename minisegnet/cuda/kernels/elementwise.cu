// elementwise.cu: the elementwise kernels, the "hello world" of CUDA. Every thread handles
// element i = blockIdx.x * blockDim.x + threadIdx.x of flat arrays of n elements and writes
// only out[i] (or y[i]): race-free. Launched by minisegnet/cuda/elementwise.py.

#include "common.cuh"

// y = max(x, 0)
template <typename T>
__global__ void relu_forward(const T* __restrict__ x, T* __restrict__ y, long long n)
{
    long long i = global_thread_index();
    if (i < n) y[i] = x[i] > (T)0 ? x[i] : (T)0;
}

// dx = dy * [x > 0]
template <typename T>
__global__ void relu_backward(const T* __restrict__ dy, const T* __restrict__ x,
                              T* __restrict__ dx, long long n)
{
    long long i = global_thread_index();
    if (i < n) dx[i] = x[i] > (T)0 ? dy[i] : (T)0;
}

// out = a + b
template <typename T>
__global__ void add(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                    long long n)
{
    long long i = global_thread_index();
    if (i < n) out[i] = a[i] + b[i];
}

// out = a * b
template <typename T>
__global__ void mul(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                    long long n)
{
    long long i = global_thread_index();
    if (i < n) out[i] = a[i] * b[i];
}

// y = alpha * x + y, in place (BLAS's axpy; an SGD step is axpy(-lr, grad, param)).
// y is read and written by the same thread only.
template <typename T>
__global__ void axpy(T alpha, const T* __restrict__ x, T* __restrict__ y, long long n)
{
    long long i = global_thread_index();
    if (i < n) y[i] = alpha * x[i] + y[i];
}
