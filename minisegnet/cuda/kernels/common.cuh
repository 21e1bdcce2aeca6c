// common.cuh: small helpers shared by the kernels in this directory.
//
// Everything here compiles three ways: NVRTC (through CuPy, on a GPU), nvcc, and g++ with
// ../emu/cuda_emu.h (the cuda-emu backend). NVRTC has no standard headers: no <cmath>, no
// <cfloat>, no INFINITY or FLT_MAX, so nothing below includes anything.
#ifndef MINISEGNET_KERNELS_COMMON_CUH
#define MINISEGNET_KERNELS_COMMON_CUH

// The flat index of this thread in a 1-D launch: blockIdx.x * blockDim.x + threadIdx.x, in
// 64 bits (a big tensor has more than 2^31 elements; the product of two unsigned ints would
// silently wrap at 2^32).
__device__ __forceinline__ long long global_thread_index()
{
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

// Where flat index i lies in a stack of (rows, cols) planes, i = (plane*rows + y)*cols + x:
// sets *y and *x and returns plane (= n*C + c for an (N, C, rows, cols) map). The kernels with
// one thread per pixel decode their index with it.
__device__ __forceinline__ long long plane_pixel(long long i, int rows, int cols, int* y, int* x)
{
    *x = (int)(i % cols);
    *y = (int)((i / cols) % rows);
    return i / ((long long)rows * cols);
}

// Math with one name for float and double. CUDA's C library names the float versions expf,
// logf, ...; calling exp() on a float in device code would silently compute in double.
__device__ __forceinline__ float cu_exp(float x) { return expf(x); }
__device__ __forceinline__ double cu_exp(double x) { return exp(x); }
__device__ __forceinline__ float cu_log(float x) { return logf(x); }
__device__ __forceinline__ double cu_log(double x) { return log(x); }
__device__ __forceinline__ float cu_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double cu_pow(double x, double y) { return pow(x, y); }
__device__ __forceinline__ float cu_floor(float x) { return floorf(x); }
__device__ __forceinline__ double cu_floor(double x) { return floor(x); }
__device__ __forceinline__ float cu_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double cu_max(double a, double b) { return fmax(a, b); }

// NaN is the only value that is not equal to itself.
template <typename T>
__device__ __forceinline__ bool is_nan(T x) { return x != x; }

// A quiet NaN, built from its bit pattern (NVRTC has no NAN macro).
template <typename T> __device__ __forceinline__ T quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double quiet_nan<double>()
{
    return __longlong_as_double(0x7ff8000000000000LL);
}

#endif  // MINISEGNET_KERNELS_COMMON_CUH
