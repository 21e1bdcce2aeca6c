// implicit_gemm.cu: convolution as a matrix product WITHOUT the column matrix.
//
// conv.cu + cuBLAS build cols (B, C*kh*kw, Ho*Wo) in global memory, kh*kw times the input,
// then multiply. Here the same product is computed tile by tile, and each tile of the "column
// matrix" is gathered from the image straight into shared memory while it is loaded: the
// columns never exist in global memory (implicit GEMM, as in cuDNN and CUTLASS).
//
// Three products, one per kernel, all C[M, N] = sum over K of A[m, k] * B[k, n] per group g:
//
//   conv_igemm_forward        y[n, g*Og+o, p]   M = Og,        N = Nimg*Ho*Wo,  K = Cg*kh*kw
//                             A = w[g*Og+o, (c, ky, kx)]          B = cols (gathered from x)
//   conv_igemm_data_grad      dx[n, g*Cg+c, q]  M = Cg,        N = Nimg*H*W,    K = Og*kh*kw
//                             A = w[g*Og+o, c, ky, kx]            B = dy at the window that
//                             tap (ky, kx) maps q from (0 where none: the col2im gather);
//                             with stride > 1, split by stride phase so that only the taps
//                             that can reach a position are multiplied (see the kernel)
//   conv_igemm_weight_grad    dw[g*Og+o, (c,ky,kx)]  M = Og,   N = Cg*kh*kw,    K = Nimg*Ho*Wo
//                             A = dy[n, g*Og+o, p]                B = cols^T (gathered from x)
//
// with p = oy*Wo + ox an output position, q = iy*W + ix an input position, and
//   iy = oy*sh - ph + ky*dh,  ix = ox*sw - pw + kx*dw     (the tap a window reads; padding = 0)
// Shapes: x (Nimg, C, H, W), w (O, Cg, kh, kw), y/dy (Nimg, O, Ho, Wo), Cg = C/G, Og = O/G.
//
// Tiling (the same in the three kernels). A block of 256 threads (16 x 16) owns a BM x BN = 64 x 64
// tile of C; thread (ty, tx) owns the TM x TN = 4 x 4 outputs at rows ty + 16*i, columns
// tx + 16*j (register blocking: each value read from shared memory feeds 4 multiply-adds, not
// 1 as in gemm.cu, and the strided rows/columns keep a warp's shared reads conflict-free and its
// global stores coalesced). The block walks K in steps of BK = 16: all 256 threads gather the
// 16 x 64 tiles of A and B into shared memory (4 values each), __syncthreads, 16 rank-1 updates
// out of shared memory, __syncthreads (nobody overwrites a tile another thread still reads).
// Values outside M, N, K, or in the padding, load as 0, so any size works.
//
// Split-K (weight gradient only): its K is the whole batch's positions (131072 for 8 images of
// 128x128) but its C is small (64 x 576: 9 blocks for a GPU with 132 SMs), so blockIdx.z also
// splits K into `splits` slices; slice s writes its partial sums to part[s] and the wrapper adds
// the slices (deterministic: no atomics, same order every run).
//
// Every thread writes only its own outputs: race-free. Launched by minisegnet/cuda/implicit_gemm.py.

#include "common.cuh"

#define IG_BM 64
#define IG_BN 64
#define IG_BK 16
#define IG_TM 4
#define IG_TN 4
#define IG_THREADS 256  // (IG_BM / IG_TM) * (IG_BN / IG_TN); the wrapper launches 16 x 16
// Shared tiles are stored k-major, tile[k][m]. The loads that fill them transposed (16 threads
// along k, then the next m) would put a warp's 32 stores in 2 of the 32 banks with rows of 64
// (16-way bank conflicts); one word of padding per row spreads them over 17 banks.
#define IG_PAD 1

// Fully unrolled loops over the 4 x 4 register tile: acc[i][j] must have compile-time indices
// to live in registers (a runtime index would put it in local memory). g++ (cuda-emu) does not
// know the pragma and does not need it.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define IG_UNROLL _Pragma("unroll")
#else
#define IG_UNROLL
#endif

// The thread's 4 x 4 accumulator tile set to 0 before the K walk.
template <typename T>
__device__ __forceinline__ void ig_zero_tile(T (*acc)[IG_TN])
{
    IG_UNROLL
    for (int i = 0; i < IG_TM; ++i)
        IG_UNROLL
        for (int j = 0; j < IG_TN; ++j) acc[i][j] = 0;
}

// The 16 rank-1 updates of one K step: acc[i][j] += A[k][ty + 16*i] * B[k][tx + 16*j].
template <typename T>
__device__ __forceinline__ void ig_multiply_tiles(const T (*a)[IG_BM + IG_PAD],
                                                  const T (*b)[IG_BN + IG_PAD],
                                                  T (*acc)[IG_TN], int ty, int tx)
{
    IG_UNROLL
    for (int k = 0; k < IG_BK; ++k) {
        T av[IG_TM], bv[IG_TN];
        IG_UNROLL
        for (int i = 0; i < IG_TM; ++i) av[i] = a[k][ty + 16 * i];
        IG_UNROLL
        for (int j = 0; j < IG_TN; ++j) bv[j] = b[k][tx + 16 * j];
        IG_UNROLL
        for (int i = 0; i < IG_TM; ++i)
            IG_UNROLL
            for (int j = 0; j < IG_TN; ++j) acc[i][j] += av[i] * bv[j];
    }
}

// Forward: y[img, g*Og + m, oy, ox] = bias + sum_k w[g*Og + m, k] * x(img, c, iy, ix).
// Grid (ceil(Nimg*Ho*Wo / 64), ceil(Og / 64), G), block (16, 16).
// The tile loads: thread t = ty*16 + tx gathers B's column n = t % 64 (one output position,
// fixed for the whole K walk, so its (img, oy, ox) are decoded once) at rows t/64 + 4r, and A's
// row-entries m = t/16 + 16r at column t % 16 (consecutive threads, consecutive weights).
template <typename T>
__global__ void conv_igemm_forward(const T* __restrict__ x, const T* __restrict__ w,
                                   const T* __restrict__ bias, T* __restrict__ y,
                                   int has_bias, int Nimg, int C, int H, int W, int O, int G,
                                   int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                                   int Ho, int Wo)
{
    __shared__ T a_tile[IG_BK][IG_BM + IG_PAD];
    __shared__ T b_tile[IG_BK][IG_BN + IG_PAD];
    const int tx = threadIdx.x, ty = threadIdx.y, t = ty * 16 + tx;
    const int g = blockIdx.z, Cg = C / G, Og = O / G, taps = kh * kw, K = Cg * taps;
    const int m0 = blockIdx.y * IG_BM;
    const long long n0 = (long long)blockIdx.x * IG_BN, P = (long long)Ho * Wo;
    const long long Ncols = (long long)Nimg * P;

    // This thread's column of B: output position n0 + t % 64.
    const long long col = n0 + t % IG_BN;
    const bool col_ok = col < Ncols;
    const int img = col_ok ? (int)(col / P) : 0;
    const int pos = col_ok ? (int)(col % P) : 0;
    const int iy0 = (pos / Wo) * sh - ph, ix0 = (pos % Wo) * sw - pw;
    const T* x_img = x + ((long long)img * C + (long long)g * Cg) * H * W;
    const T* w_g = w + (long long)g * Og * K;

    T acc[IG_TM][IG_TN];
    ig_zero_tile<T>(acc);

    for (int k0 = 0; k0 < K; k0 += IG_BK) {
        for (int r = 0; r < 4; ++r) {  // A: w rows m0 + t/16 + 16r, column k0 + t%16
            int m = t / IG_BK + 16 * r, k = k0 + t % IG_BK;
            a_tile[t % IG_BK][m] =
                (m0 + m < Og && k < K) ? w_g[(long long)(m0 + m) * K + k] : (T)0;
        }
        for (int r = 0; r < 4; ++r) {  // B: the im2col gather, rows k0 + t/64 + 4r
            int kr = t / IG_BN + 4 * r, k = k0 + kr;
            T v = 0;
            if (col_ok && k < K) {
                int c = k / taps, tap = k % taps;
                int iy = iy0 + (tap / kw) * dh, ix = ix0 + (tap % kw) * dw;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                    v = x_img[((long long)c * H + iy) * W + ix];
            }
            b_tile[kr][t % IG_BN] = v;
        }
        __syncthreads();  // both tiles complete
        ig_multiply_tiles<T>(a_tile, b_tile, acc, ty, tx);
        __syncthreads();  // everyone done reading before the next step overwrites
    }

    IG_UNROLL
    for (int j = 0; j < IG_TN; ++j) {
        long long n = n0 + tx + 16 * j;
        if (n >= Ncols) continue;
        int im = (int)(n / P), p = (int)(n % P);
        IG_UNROLL
        for (int i = 0; i < IG_TM; ++i) {
            int m = m0 + ty + 16 * i;
            if (m >= Og) continue;
            int o = g * Og + m;
            y[((long long)im * O + o) * P + p] = acc[i][j] + (has_bias ? bias[o] : (T)0);
        }
    }
}

// Data gradient: dx[img, g*Cg + m, iy, ix] = sum over (o, ky, kx) of
//   w[g*Og + o, m, ky, kx] * dy[img, g*Og + o, oy, ox]  where oy*sh = iy + ph - ky*dh and
//   ox*sw = ix + pw - kx*dw are exact multiples inside the output.
// This is col2im(w^T @ dy) as one gather-GEMM: no dcols matrix, no atomics.
//
// Stride phases. With stride sh > 1 a row iy receives only the taps ky with
// ky*dh = iy + ph (mod sh): for a 4x4 kernel with stride 2 (the transposed convolution of
// FCN/SegNet-style decoders) a quarter of the 16 taps. Gathering all taps and zeroing the rest
// would spend 3/4 of the multiply-adds on zeros, so the positions are split into sh*sw phases
// (ry, rx) = ((iy + ph) % sh, (ix + pw) % sw), one per blockIdx.z, and each block multiplies only
// its phase's taps: ky = ky0, ky0 + step_y, ... < kh, with ky0 the first solution of
// ky*dh = ry (mod sh) and step_y = sh / gcd(sh, dh) (a phase with no solution gets zeros).
// With stride 1 there is one phase holding every tap.
// Grid (ceil(Nimg*ceil(H/sh)*ceil(W/sw) / 64), ceil(Cg / 64), G*sh*sw), block (16, 16).

// The taps of one axis that reach positions of phase r: first tap, spacing and count.
__device__ __forceinline__ void ig_phase_taps(int k, int s, int d, int r, int* first, int* step,
                                              int* count)
{
    int f = -1;
    for (int t = 0; t < s && t < k; ++t)  // solutions repeat every s/gcd(s, d) <= s taps
        if ((t * d) % s == r) {
            f = t;
            break;
        }
    int p = 1;
    while ((p * d) % s != 0) ++p;  // = s / gcd(s, d)
    *first = f < 0 ? 0 : f;
    *step = p;
    *count = f < 0 ? 0 : (k - f + p - 1) / p;
}

template <typename T>
__global__ void conv_igemm_data_grad(const T* __restrict__ dy, const T* __restrict__ w,
                                     T* __restrict__ dx, int Nimg, int C, int H, int W, int O,
                                     int G, int kh, int kw, int sh, int sw, int ph, int pw,
                                     int dh, int dw, int Ho, int Wo)
{
    __shared__ T a_tile[IG_BK][IG_BM + IG_PAD];
    __shared__ T b_tile[IG_BK][IG_BN + IG_PAD];
    const int tx = threadIdx.x, ty = threadIdx.y, t = ty * 16 + tx;
    const int g = blockIdx.z / (sh * sw), ry = (blockIdx.z / sw) % sh, rx = blockIdx.z % sw;
    const int Cg = C / G, Og = O / G, taps = kh * kw;
    const int m0 = blockIdx.y * IG_BM;

    // This block's phase: rows iy0 + j*sh (j < Hp) and columns ix0 + i*sw (i < Wp) ...
    const int iy0 = ((ry - ph) % sh + sh) % sh, ix0 = ((rx - pw) % sw + sw) % sw;
    const int Hp = iy0 < H ? (H - iy0 + sh - 1) / sh : 0;
    const int Wp = ix0 < W ? (W - ix0 + sw - 1) / sw : 0;
    // ... and its taps: ky = ky0 + a*step_y (a < nty), kx = kx0 + b*step_x (b < ntx).
    int ky0, step_y, nty, kx0, step_x, ntx;
    ig_phase_taps(kh, sh, dh, ry, &ky0, &step_y, &nty);
    ig_phase_taps(kw, sw, dw, rx, &kx0, &step_x, &ntx);
    const int phase_taps = nty * ntx, K = Og * phase_taps;
    const long long n0 = (long long)blockIdx.x * IG_BN, Q = (long long)Hp * Wp;
    const long long Ncols = (long long)Nimg * Q;

    const long long col = n0 + t % IG_BN;  // this thread's input position, fixed
    const bool col_ok = col < Ncols;
    const int img = col_ok ? (int)(col / Q) : 0;
    const int q = col_ok ? (int)(col % Q) : 0;
    const int ty0 = iy0 + (q / (Wp > 0 ? Wp : 1)) * sh + ph;  // oy*sh = ty0 - ky*dh
    const int tx0 = ix0 + (q % (Wp > 0 ? Wp : 1)) * sw + pw;
    const T* dy_img = dy + ((long long)img * O + (long long)g * Og) * Ho * Wo;
    const T* w_g = w + (long long)g * Og * Cg * taps;

    T acc[IG_TM][IG_TN];
    ig_zero_tile<T>(acc);

    for (int k0 = 0; k0 < K; k0 += IG_BK) {
        for (int r = 0; r < 4; ++r) {  // A[m, k] = w[g*Og + o, m, ky, kx], k = (o, a, b)
            int m = t / IG_BK + 16 * r, k = k0 + t % IG_BK;
            T v = 0;
            if (m0 + m < Cg && k < K) {
                int o = k / phase_taps, ab = k % phase_taps;
                int ky = ky0 + (ab / ntx) * step_y, kx = kx0 + (ab % ntx) * step_x;
                v = w_g[((long long)o * Cg + m0 + m) * taps + ky * kw + kx];
            }
            a_tile[t % IG_BK][m] = v;
        }
        for (int r = 0; r < 4; ++r) {  // B[k, n]: the dy value tap k of position n receives
            int kr = t / IG_BN + 4 * r, k = k0 + kr;
            T v = 0;
            if (col_ok && k < K) {
                int o = k / phase_taps, ab = k % phase_taps;
                int ky = ky0 + (ab / ntx) * step_y, kx = kx0 + (ab % ntx) * step_x;
                int oy = (ty0 - ky * dh) / sh, ox = (tx0 - kx * dw) / sw;  // exact by the phase
                if (ty0 - ky * dh >= 0 && tx0 - kx * dw >= 0 && oy < Ho && ox < Wo)
                    v = dy_img[((long long)o * Ho + oy) * Wo + ox];
            }
            b_tile[kr][t % IG_BN] = v;
        }
        __syncthreads();
        ig_multiply_tiles<T>(a_tile, b_tile, acc, ty, tx);
        __syncthreads();
    }

    IG_UNROLL
    for (int j = 0; j < IG_TN; ++j) {
        long long n = n0 + tx + 16 * j;
        if (n >= Ncols) continue;
        int im = (int)(n / Q), qq = (int)(n % Q);
        int iy = iy0 + (qq / Wp) * sh, ix = ix0 + (qq % Wp) * sw;
        IG_UNROLL
        for (int i = 0; i < IG_TM; ++i) {
            int m = m0 + ty + 16 * i;
            if (m < Cg) dx[(((long long)im * C + g * Cg + m) * H + iy) * W + ix] = acc[i][j];
        }
    }
}

// Weight gradient, slice s of K: part[s, g*Og + m, kcol] = sum over positions (img, oy, ox) in
// slice s of dy[img, g*Og + m, oy, ox] * x(img, g*Cg + c, iy, ix), kcol = (c*kh + ky)*kw + kx.
// Grid (ceil(Cg*kh*kw / 64), ceil(Og / 64), G * splits), block (16, 16); slice s covers
// positions [s*slice_len, (s+1)*slice_len), slice_len a multiple of 16.
// Loads: A (dy) as in the forward's A, consecutive threads read consecutive positions. For B
// this thread's 4 columns t/16 + 16r (weights (c, ky, kx), decoded once) are fixed and its row
// t % 16 (a position) moves along K, so again consecutive threads read consecutive positions.
template <typename T>
__global__ void conv_igemm_weight_grad(const T* __restrict__ x, const T* __restrict__ dy,
                                       T* __restrict__ part, int Nimg, int C, int H, int W, int O,
                                       int G, int kh, int kw, int sh, int sw, int ph, int pw,
                                       int dh, int dw, int Ho, int Wo, int slice_len)
{
    __shared__ T a_tile[IG_BK][IG_BM + IG_PAD];
    __shared__ T b_tile[IG_BK][IG_BN + IG_PAD];
    const int tx = threadIdx.x, ty = threadIdx.y, t = ty * 16 + tx;
    const int g = blockIdx.z % G, s = blockIdx.z / G;
    const int Cg = C / G, Og = O / G, taps = kh * kw, Ncols = Cg * taps;
    const int m0 = blockIdx.y * IG_BM, n0 = blockIdx.x * IG_BN;
    const int P = Ho * Wo;
    const long long K = (long long)Nimg * P;
    const long long k_begin = (long long)s * slice_len;
    const long long k_end = k_begin + slice_len < K ? k_begin + slice_len : K;

    int c_of[4], dy_of[4], dx_of[4];  // this thread's 4 B columns: channel, tap offsets
    for (int r = 0; r < 4; ++r) {
        int n = n0 + t / IG_BK + 16 * r;
        int c = n < Ncols ? n / taps : -1, tap = n % taps;
        c_of[r] = c;
        dy_of[r] = (tap / kw) * dh - ph;
        dx_of[r] = (tap % kw) * dw - pw;
    }

    T acc[IG_TM][IG_TN];
    ig_zero_tile<T>(acc);

    for (long long k0 = k_begin; k0 < k_end; k0 += IG_BK) {
        long long k = k0 + t % IG_BK;  // this thread's position in both loads
        bool k_ok = k < k_end;
        int img = k_ok ? (int)(k / P) : 0, p = k_ok ? (int)(k % P) : 0;
        int oy = p / Wo, ox = p % Wo;
        for (int r = 0; r < 4; ++r) {  // A[m, k] = dy[img, g*Og + m, p]
            int m = t / IG_BK + 16 * r;
            a_tile[t % IG_BK][m] =
                (k_ok && m0 + m < Og) ? dy[((long long)img * O + g * Og + m0 + m) * P + p] : (T)0;
        }
        for (int r = 0; r < 4; ++r) {  // B[k, n] = x at the tap of column n seen from p
            T v = 0;
            if (k_ok && c_of[r] >= 0) {
                int iy = oy * sh + dy_of[r], ix = ox * sw + dx_of[r];
                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                    v = x[(((long long)img * C + g * Cg + c_of[r]) * H + iy) * W + ix];
            }
            b_tile[t % IG_BK][t / IG_BK + 16 * r] = v;
        }
        __syncthreads();
        ig_multiply_tiles<T>(a_tile, b_tile, acc, ty, tx);
        __syncthreads();
    }

    T* part_s = part + (long long)s * O * Ncols;
    IG_UNROLL
    for (int i = 0; i < IG_TM; ++i) {
        int m = m0 + ty + 16 * i;
        if (m >= Og) continue;
        IG_UNROLL
        for (int j = 0; j < IG_TN; ++j) {
            int n = n0 + tx + 16 * j;
            if (n < Ncols) part_s[(long long)(g * Og + m) * Ncols + n] = acc[i][j];
        }
    }
}
