// backward_small.cu: dx = dy * W + U * A for small batches, n <= LORA_SMALL_N_MAX.
//
// dx[i,c] = sum_j dy[i,j] * W[j,c] + sum_k U[i,k] * A[k,c], fp32 accumulation:
// one product over the concatenated inner dimension, [dy | U] . [W ; A]. With
// U = s * dy * B (lora_grad_u) this is the input gradient of an unmerged
// layer; with r == 0 (U and A may be null) it is dy * W, that of a merged one.
//
// At small n the product is bound by the bandwidth of reading W, whose rows
// run along dx's columns. Block b owns the LORA_GXS_COLS columns c0 =
// b*LORA_GXS_COLS ... of dx, lane l column c0 + l, so that a warp reads each
// row segment W[j, c0 .. c0+31] as one coalesced 128-byte line, with an
// evict-first hint. The block's LORA_GXS_WARPS warps split the rows: warp w
// takes rows j = w, w + LORA_GXS_WARPS, ..., four at a time so that four
// loads of W are in flight per lane. Every lane keeps n accumulators; the
// coefficients dy[i,j] (U[i,k]), the same for the whole warp, come through
// the read-only cache as broadcasts. The warps' partial sums are reduced
// through shared memory and dx is written once, coalesced, never read.
//
// Global memory: reads W (out x in) and A (r x in) once; dy (n x out) and
// U (n x r) through the cache; writes each element of dx (n x in) exactly
// once. Shared memory: LORA_GXS_WARPS*LORA_SMALL_N_MAX*(LORA_GXS_COLS+1)
// floats (static).
#include "common.cuh"

static_assert(LORA_GXS_WARPS * LORA_WARP_SIZE == LORA_GXS_THREADS && LORA_GXS_COLS == LORA_WARP_SIZE,
              "lora_grad_x_small: one column per lane, warps split the rows");

#define LORA_GXS_UNROLL 4

// acc[i] += sum over rows j = warp, warp + LORA_GXS_WARPS, ... < rows of
// coef[i*ldc + j] * M[j*in + c], for i < NB; rows i >= n read row n-1, and
// their sums are discarded by the caller.
template <int NB>
__device__ __forceinline__ void lora_gxs_rows(const float* __restrict__ coef, int ldc,
                                              const float* __restrict__ M, int rows, int in,
                                              int n, int c, int warp, float (&acc)[NB]) {
  const float* cr[NB];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) cr[i] = coef + static_cast<long long>(lora_min(i, n - 1)) * ldc;

  int j = warp;
  LORA_NO_UNROLL
  for (; j + (LORA_GXS_UNROLL - 1) * LORA_GXS_WARPS < rows; j += LORA_GXS_UNROLL * LORA_GXS_WARPS) {
    float m[LORA_GXS_UNROLL];
    LORA_UNROLL
    for (int u = 0; u < LORA_GXS_UNROLL; ++u)
      m[u] = __ldcs(M + static_cast<long long>(j + u * LORA_GXS_WARPS) * in + c);
    LORA_UNROLL
    for (int u = 0; u < LORA_GXS_UNROLL; ++u) {
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) acc[i] = fmaf(__ldg(cr[i] + j + u * LORA_GXS_WARPS), m[u], acc[i]);
    }
  }
  LORA_NO_UNROLL
  for (; j < rows; j += LORA_GXS_WARPS) {
    const float m = __ldcs(M + static_cast<long long>(j) * in + c);
    LORA_UNROLL
    for (int i = 0; i < NB; ++i) acc[i] = fmaf(__ldg(cr[i] + j), m, acc[i]);
  }
}

// One warp's share for NB >= n rows of dy, stored to its slice of shared memory.
template <int NB>
__device__ __forceinline__ void lora_gxs_warp(const float* __restrict__ dy, const float* __restrict__ W,
                                              const float* __restrict__ U, const float* __restrict__ A,
                                              int n, int in, int out, int r, int c, int warp, int lane,
                                              float (*part)[LORA_GXS_COLS + 1]) {
  float acc[NB];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) acc[i] = 0.0f;
  lora_gxs_rows<NB>(dy, out, W, out, in, n, c, warp, acc);
  if (r > 0) lora_gxs_rows<NB>(U, r, A, r, in, n, c, warp, acc);
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) part[i][lane] = acc[i];
}

extern "C" __global__ void __launch_bounds__(LORA_GXS_THREADS)
    lora_grad_x_small(const float* __restrict__ dy, const float* __restrict__ W,
                      const float* __restrict__ U, const float* __restrict__ A,
                      float* __restrict__ dx, int n, int in, int out, int r) {
  __shared__ float part[LORA_GXS_WARPS][LORA_SMALL_N_MAX][LORA_GXS_COLS + 1];
  if (blockDim.x != LORA_GXS_THREADS) return;  // the tiling needs this exact block
  if (n < 1 || n > LORA_SMALL_N_MAX) return;

  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int c0 = blockIdx.x * LORA_GXS_COLS;
  const int c = lora_min(c0 + lane, in - 1);  // past the edge: a valid column, not stored

  float(*p)[LORA_GXS_COLS + 1] = part[warp];
  if (n == 1)
    lora_gxs_warp<1>(dy, W, U, A, n, in, out, r, c, warp, lane, p);
  else if (n <= 2)
    lora_gxs_warp<2>(dy, W, U, A, n, in, out, r, c, warp, lane, p);
  else if (n <= 4)
    lora_gxs_warp<4>(dy, W, U, A, n, in, out, r, c, warp, lane, p);
  else if (n <= 8)
    lora_gxs_warp<8>(dy, W, U, A, n, in, out, r, c, warp, lane, p);
  else
    lora_gxs_warp<16>(dy, W, U, A, n, in, out, r, c, warp, lane, p);
  __syncthreads();

  for (int v = threadIdx.x; v < n * LORA_GXS_COLS; v += LORA_GXS_THREADS) {
    const int i = v / LORA_GXS_COLS;
    const int cc = v % LORA_GXS_COLS;
    if (c0 + cc >= in) continue;
    float sum = 0.0f;
    LORA_UNROLL
    for (int w = 0; w < LORA_GXS_WARPS; ++w) sum += part[w][i][cc];
    dx[static_cast<long long>(i) * in + c0 + cc] = sum;
  }
}

#undef LORA_GXS_UNROLL

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_grad_x_small)
#endif
