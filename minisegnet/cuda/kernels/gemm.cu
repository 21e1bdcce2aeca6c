// gemm.cu: a tiled matrix product in shared memory, C = A @ B, the teaching example of how a
// GEMM works on a GPU. (The framework's convolutions use cuBLAS through cupy.matmul, which is
// many times faster: register blocking, vectorised loads, tensor cores, double buffering.)
// Launched by minisegnet/cuda/gemm.py.
//
// A (M, K), B (K, N), C (M, N), row-major. Block (TILE, TILE) computes the TILE x TILE tile of
// C at rows blockIdx.y*TILE.., columns blockIdx.x*TILE..; thread (ty, tx) = (threadIdx.y,
// threadIdx.x) owns C[row, col] with row = blockIdx.y*TILE + ty, col = blockIdx.x*TILE + tx and
// is the only thread that writes it: race-free.
//
// A naive kernel reads 2K values from global memory per output. Here the block walks along K
// one tile at a time: its TILE*TILE threads each load ONE element of A's tile and one of B's
// into shared memory, wait (__syncthreads) until the whole tiles are there, then each thread
// runs TILE multiply-adds out of shared memory. Every global value loaded is reused TILE times.
// The second __syncthreads stops a fast thread from overwriting the tiles for step k0 + TILE
// while others still read the tiles of step k0. Edges: elements past M, N or K load as 0, so
// any size works (threads outside C still load and sync: they must reach every barrier).

#include "common.cuh"

#define TILE 16

template <typename T>
__global__ void gemm_tiled(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c,
                           int M, int N, int K)
{
    __shared__ T a_tile[TILE][TILE];
    __shared__ T b_tile[TILE][TILE];
    int ty = threadIdx.y, tx = threadIdx.x;
    int row = blockIdx.y * TILE + ty;
    int col = blockIdx.x * TILE + tx;
    T acc = 0;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        a_tile[ty][tx] = (row < M && k0 + tx < K) ? a[(long long)row * K + k0 + tx] : (T)0;
        b_tile[ty][tx] = (k0 + ty < K && col < N) ? b[(long long)(k0 + ty) * N + col] : (T)0;
        __syncthreads();  // both tiles complete
        for (int k = 0; k < TILE; ++k) acc += a_tile[ty][k] * b_tile[k][tx];
        __syncthreads();  // everyone done with these tiles before they are overwritten
    }
    if (row < M && col < N) c[(long long)row * N + col] = acc;
}
