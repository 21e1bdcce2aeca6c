// crf.cu: the permutohedral lattice filter of the dense CRF (splat, blur, slice), launched by
// minisegnet/cuda/crf.py. The lattice itself (each point's simplex vertices and barycentric
// weights, the vertices' neighbours) is built on the host (minisegnet/ops/crf.py,
// build_lattice) and passed in; these kernels do the per-iteration work, 21 filters per CRF.
//
// Layouts (M1 = vertices + 1: row 0 is the "missing" vertex, always zero):
//   values (N, C), scale (N,)                    the signal and the normalisation factors
//   start (M1 + 1,), point, wgt (N * (d+1),)     the splat as a gather (CSR: for vertex v,
//                                                the points start[v] .. start[v+1] and weights)
//   lattice (M1, C)
//   neighbours (M1, 2)                           one lattice axis' two neighbours (0: missing)
//   offset, weight (N, K1), K1 = d + 1           each point's vertices and weights
//
// splat:  lattice[v, k] = sum_e wgt[e] * scale[p_e] * values[p_e, k]     thread per (v, k)
// blur:   dst[v, k] = src[v, k] + (src[n1, k] + src[n2, k]) / 2           thread per (v, k)
// slice:  out[p, k] = alpha * scale[p] * sum_r weight[p, r] lattice[offset[p, r], k]
//                                                                        thread per (p, k)
// Every thread writes only its own element: no atomics (the splat gathers instead of
// scattering, thanks to the CSR inverse built once per lattice).

#include "common.cuh"

template <typename T>
__global__ void lattice_splat(const long long* __restrict__ start, const int* __restrict__ point,
                              const float* __restrict__ wgt, const T* __restrict__ values,
                              const T* __restrict__ scale, T* __restrict__ lattice, int M1, int C)
{
    long long i = global_thread_index();
    if (i >= (long long)M1 * C) return;
    int v = (int)(i / C), k = (int)(i % C);
    T s = 0;
    if (v > 0) {
        for (long long e = start[v]; e < start[v + 1]; ++e) {
            int p = point[e];
            s += (T)wgt[e] * scale[p] * values[(long long)p * C + k];
        }
    }
    lattice[i] = s;
}

template <typename T>
__global__ void lattice_blur(const int* __restrict__ neighbours, const T* __restrict__ src,
                             T* __restrict__ dst, int M1, int C)
{
    long long i = global_thread_index();
    if (i >= (long long)M1 * C) return;
    int v = (int)(i / C), k = (int)(i % C);
    if (v == 0) {
        dst[i] = 0;
        return;
    }
    int n1 = neighbours[2 * v], n2 = neighbours[2 * v + 1];
    dst[i] = src[i] + (T)0.5 * (src[(long long)n1 * C + k] + src[(long long)n2 * C + k]);
}

template <typename T>
__global__ void lattice_slice(const int* __restrict__ offset, const float* __restrict__ weight,
                              const T* __restrict__ lattice, T alpha, const T* __restrict__ scale,
                              T* __restrict__ out, int N, int K1, int C)
{
    long long i = global_thread_index();
    if (i >= (long long)N * C) return;
    int p = (int)(i / C), k = (int)(i % C);
    T s = 0;
    for (int r = 0; r < K1; ++r)
        s += (T)weight[(long long)p * K1 + r] * lattice[(long long)offset[(long long)p * K1 + r] * C + k];
    out[i] = alpha * scale[p] * s;
}
