// forward_small.cu: y = x * W^T + T * B^T for small batches, n <= LORA_SMALL_N_MAX.
//
// y[i,j] = sum_c x[i,c] * W[j,c] + sum_k T[i,k] * B[j,k], fp32 accumulation,
// i.e. one dot product over the concatenated inner dimension [x | T].[W | B]^T.
// With T = s * x * A^T (lora_shrink) this is the unmerged LoRA forward; with
// r == 0 (T and B may be null) it is the base product x * W^T on the same path.
//
// At small n the product is bound by the bandwidth of reading W. Warp w of
// block b owns LORA_SMALL_ROWS_PER_WARP consecutive rows j0.. of W (columns of
// y), j0 = b*LORA_SMALL_ROWS_PER_BLOCK + w*LORA_SMALL_ROWS_PER_WARP. Its lanes
// stride along the inner dimension, so each W row is streamed from global
// memory exactly once, coalesced, as float4 when the length is a multiple of 4
// and the pointers are 16-byte aligned (scalar otherwise), with an
// evict-first hint. Every lane keeps n x LORA_SMALL_ROWS_PER_WARP accumulators:
// each x value it loads serves all its W rows, and the x rows, small and
// shared by every warp of the grid, come through the read-only cache. The lane
// partials are reduced through shared memory and y is written once, never read.
//
// Global memory: reads W (out x in), B (out x r) once; x (n x in) and T (n x r)
// through the cache; writes each element of y (n x out) exactly once.
// Shared memory: LORA_SMALL_WARPS*LORA_SMALL_N_MAX*LORA_SMALL_ROWS_PER_WARP*33
// floats (static).
#include "common.cuh"

#define LORA_SMALL_R LORA_SMALL_ROWS_PER_WARP

static_assert(LORA_SMALL_N_MAX == 16, "lora_forward_small dispatches n to 1, 2, 4, 8, 16");

__device__ __forceinline__ float lora_small_fma(float4 x, float4 w, float acc) {
  return lora_dot4(x, w, acc);
}
__device__ __forceinline__ float lora_small_fma(float x, float w, float acc) { return fmaf(x, w, acc); }

// acc[i][q] += sum over a segment of xs[i,c] * ws[j0+q,c], c < len, where V is
// float4 or float and len counts V elements. Rows i >= n and j0+q >= out are
// clamped to the last row; their sums are discarded by the caller. U chunks of
// 32 V elements per lane are loaded before any is used, so that a lane keeps
// U*LORA_SMALL_ROWS_PER_WARP loads of W in flight (U is larger for small n,
// whose accumulators leave registers to spare).
template <int NB, int U, class V>
__device__ __forceinline__ void lora_small_segment(const V* __restrict__ xs,
                                                   const V* __restrict__ ws, int len, int n,
                                                   int j0, int out, int lane,
                                                   float (&acc)[NB][LORA_SMALL_R]) {
  const V* xr[NB];
  const V* wr[LORA_SMALL_R];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) xr[i] = xs + static_cast<long long>(lora_min(i, n - 1)) * len;
  LORA_UNROLL
  for (int q = 0; q < LORA_SMALL_R; ++q)
    wr[q] = ws + static_cast<long long>(lora_min(j0 + q, out - 1)) * len;

  int c = lane;
  LORA_NO_UNROLL
  for (; c + (U - 1) * LORA_WARP_SIZE < len; c += U * LORA_WARP_SIZE) {
    V w[U][LORA_SMALL_R];
    LORA_UNROLL
    for (int u = 0; u < U; ++u) {
      LORA_UNROLL
      for (int q = 0; q < LORA_SMALL_R; ++q) w[u][q] = __ldcs(wr[q] + c + u * LORA_WARP_SIZE);
    }
    LORA_UNROLL
    for (int u = 0; u < U; ++u) {
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) {
        const V xv = __ldg(xr[i] + c + u * LORA_WARP_SIZE);
        LORA_UNROLL
        for (int q = 0; q < LORA_SMALL_R; ++q) acc[i][q] = lora_small_fma(xv, w[u][q], acc[i][q]);
      }
    }
  }
  if (U > 1) {
    LORA_NO_UNROLL
    for (; c < len; c += LORA_WARP_SIZE) {
      V w[LORA_SMALL_R];
      LORA_UNROLL
      for (int q = 0; q < LORA_SMALL_R; ++q) w[q] = __ldcs(wr[q] + c);
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) {
        const V xv = __ldg(xr[i] + c);
        LORA_UNROLL
        for (int q = 0; q < LORA_SMALL_R; ++q) acc[i][q] = lora_small_fma(xv, w[q], acc[i][q]);
      }
    }
  }
}

// acc += the segment xs (n x len) . ws (out x len)^T, as float4 when possible.
template <int NB>
__device__ __forceinline__ void lora_small_any(const float* __restrict__ xs,
                                               const float* __restrict__ ws, int len, int n, int j0,
                                               int out, int lane, float (&acc)[NB][LORA_SMALL_R]) {
  constexpr int U = NB <= 2 ? 4 : (NB <= 4 ? 2 : 1);
  if ((len & 3) == 0 && lora_aligned16(xs) && lora_aligned16(ws))
    lora_small_segment<NB, U>(reinterpret_cast<const float4*>(xs),
                              reinterpret_cast<const float4*>(ws), len >> 2, n, j0, out, lane, acc);
  else
    lora_small_segment<NB, U>(xs, ws, len, n, j0, out, lane, acc);
}

// The whole warp's work for NB >= n rows of x; part is this warp's slice of
// shared memory.
template <int NB>
__device__ __forceinline__ void lora_small_warp(const float* __restrict__ x,
                                                const float* __restrict__ W,
                                                const float* __restrict__ T,
                                                const float* __restrict__ B, float* __restrict__ y,
                                                int n, int in, int out, int r, int j0, int lane,
                                                float (*part)[LORA_WARP_SIZE + 1]) {
  float acc[NB][LORA_SMALL_R];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < LORA_SMALL_R; ++q) acc[i][q] = 0.0f;
  }

  lora_small_any<NB>(x, W, in, n, j0, out, lane, acc);
  if (r > 0) lora_small_any<NB>(T, B, r, n, j0, out, lane, acc);

  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < LORA_SMALL_R; ++q) part[i * LORA_SMALL_R + q][lane] = acc[i][q];
  }
  __syncwarp();

  for (int v = lane; v < NB * LORA_SMALL_R; v += LORA_WARP_SIZE) {
    const int i = v / LORA_SMALL_R;
    const int j = j0 + v % LORA_SMALL_R;
    if (i < n && j < out) {
      float sum = 0.0f;
      LORA_UNROLL
      for (int l = 0; l < LORA_WARP_SIZE; ++l) sum += part[v][l];
      y[static_cast<long long>(i) * out + j] = sum;
    }
  }
}

extern "C" __global__ void __launch_bounds__(LORA_SMALL_THREADS, 3)
    lora_forward_small(const float* __restrict__ x, const float* __restrict__ W,
                       const float* __restrict__ T, const float* __restrict__ B,
                       float* __restrict__ y, int n, int in, int out, int r) {
  __shared__ float part[LORA_SMALL_WARPS][LORA_SMALL_N_MAX * LORA_SMALL_R][LORA_WARP_SIZE + 1];

  if (blockDim.x != LORA_SMALL_THREADS) return;  // the tiling needs this exact block
  if (n < 1 || n > LORA_SMALL_N_MAX) return;
  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int j0 = blockIdx.x * LORA_SMALL_ROWS_PER_BLOCK + warp * LORA_SMALL_R;
  if (j0 >= out) return;  // the whole warp leaves together

  float(*p)[LORA_WARP_SIZE + 1] = part[warp];
  if (n == 1)
    lora_small_warp<1>(x, W, T, B, y, n, in, out, r, j0, lane, p);
  else if (n <= 2)
    lora_small_warp<2>(x, W, T, B, y, n, in, out, r, j0, lane, p);
  else if (n <= 4)
    lora_small_warp<4>(x, W, T, B, y, n, in, out, r, j0, lane, p);
  else if (n <= 8)
    lora_small_warp<8>(x, W, T, B, y, n, in, out, r, j0, lane, p);
  else
    lora_small_warp<16>(x, W, T, B, y, n, in, out, r, j0, lane, p);
}

#undef LORA_SMALL_R

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_forward_small)
#endif
