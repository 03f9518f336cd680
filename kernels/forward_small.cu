// forward_small.cu: P = x * [W ; A]^T for small batches, n <= LORA_SMALL_N_MAX,
// the inner dimension split over the grid's y.
//
// P[z][i,j] = sum over c in split z of x[i,c] * V[j,c], V = [W ; A] the
// (out + r) x in stack of W and A, fp32 accumulation. Split z of gridDim.y
// covers c in [z*chunk, min(in, (z+1)*chunk)), chunk = ceil(in / gridDim.y)
// rounded up to LORA_SMALL_SPLIT_ALIGN; P[z] is n x (out + r), row-major, at
// P + z*n*(out + r). lora_forward_reduce then sums the splits in order and
// writes y = P[:, :out] + s * P[:, out:] * B^T. With r == 0 (A may be null)
// and gridDim.y == 1, P is y = x * W^T itself.
//
// Why the shrink lives here (the cost model, in = out = 4096, r = 16, n <= 16,
// H200): T = x * A^T reads A, 256 KB, against 64 MB of W. As its own launch
// (lora_shrink) it ran on ceil(n/8) * ceil(r/8) = 2 blocks whose warps walk
// all of `in` in 16 dependent round trips: ~8-13 us of latency, plus a launch
// gap, in front of a ~14 us main kernel. Here A's r rows are r more rows of
// the same streamed operand: +0.4 % bytes, spread over every block and split
// like W, so it costs what its bytes cost. The price is the reduction launch
// (a few us of latency at n <= 16; it reads split*n*(out + r) floats and B,
// < 2 % of W's bytes), which the split of `in` needs anyway to put 2 waves of
// blocks on the GPU when out is narrow. Partial sums go through the workspace
// rather than atomics so that the result does not depend on block order.
//
// At small n the product is bound by the bandwidth of reading W. Warp w of
// block (b, z) owns LORA_SMALL_ROWS_PER_WARP consecutive rows j0.. of V,
// j0 = b*LORA_SMALL_ROWS_PER_BLOCK + w*LORA_SMALL_ROWS_PER_WARP. Its lanes
// stride along its split of the inner dimension, so each row is streamed
// from global memory exactly once, coalesced, as float4 when in is a multiple
// of 4 and the pointers are 16-byte aligned (scalar otherwise), with an
// evict-first hint. Every lane keeps n x LORA_SMALL_ROWS_PER_WARP
// accumulators: each x value it loads serves all its rows, and the x rows,
// small and shared by every warp of the grid, come through the read-only
// cache. The lane partials are reduced through shared memory and P is written
// once, never read.
//
// Global memory: reads W (out x in) and A (r x in) once; x (n x in) through
// the cache; writes each element of P (gridDim.y x n x (out + r)) exactly
// once. Shared memory: LORA_SMALL_WARPS*LORA_SMALL_N_MAX*LORA_SMALL_ROWS_PER_WARP*33
// floats (static).
#include "common.cuh"

#define LORA_SMALL_R LORA_SMALL_ROWS_PER_WARP

static_assert(LORA_SMALL_N_MAX == 16, "lora_forward_small dispatches n to 1, 2, 4, 8, 16");
static_assert(LORA_SMALL_SPLIT_ALIGN % (4 * LORA_WARP_SIZE) == 0, "splits keep float4 alignment");

__device__ __forceinline__ float lora_small_fma(float4 x, float4 w, float acc) {
  return lora_dot4(x, w, acc);
}
__device__ __forceinline__ float lora_small_fma(float x, float w, float acc) { return fmaf(x, w, acc); }

// acc[i][q] += sum over c < len of xr[i][c] * wr[q][c], where V is float4 or
// float, len counts V elements and the row pointers already point at the
// split's first element. U chunks of 32 V elements per lane are loaded before
// any is used, so that a lane keeps U*LORA_SMALL_ROWS_PER_WARP loads of W in
// flight (LORA_SMALL_U: plan.SmallUnroll mirrors it).
template <int NB, int U, class V>
__device__ __forceinline__ void lora_small_segment(const V* const (&xr)[NB],
                                                   const V* const (&wr)[LORA_SMALL_R], int len,
                                                   int lane, float (&acc)[NB][LORA_SMALL_R]) {
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

// Row j of V = [W ; A] (out + r) x in.
__device__ __forceinline__ const float* lora_small_vrow(const float* __restrict__ W,
                                                        const float* __restrict__ A, int j,
                                                        int in, int out) {
  return j < out ? W + static_cast<long long>(j) * in : A + static_cast<long long>(j - out) * in;
}

// acc += x[:, c0 : c0+len] . V[j0 .., c0 : c0+len]^T, as float4 when vec.
// Rows i >= n and j >= rows are clamped to the last row; their sums are
// discarded by the caller.
template <int NB, class V>
__device__ __forceinline__ void lora_small_rows(const float* __restrict__ x,
                                                const float* __restrict__ W,
                                                const float* __restrict__ A, int n, int in,
                                                int out, int rows, int j0, int c0, int len,
                                                int lane, float (&acc)[NB][LORA_SMALL_R]) {
  constexpr int U = NB <= 2 ? 4 : 2;
  constexpr int E = sizeof(V) / sizeof(float);
  const V* xr[NB];
  const V* wr[LORA_SMALL_R];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i)
    xr[i] = reinterpret_cast<const V*>(x + static_cast<long long>(lora_min(i, n - 1)) * in + c0);
  LORA_UNROLL
  for (int q = 0; q < LORA_SMALL_R; ++q)
    wr[q] = reinterpret_cast<const V*>(lora_small_vrow(W, A, lora_min(j0 + q, rows - 1), in, out) + c0);
  lora_small_segment<NB, U, V>(xr, wr, len / E, lane, acc);
}

// The whole warp's work for NB >= n rows of x; part is this warp's slice of
// shared memory, p this split's slice of P.
template <int NB>
__device__ __forceinline__ void lora_small_warp(const float* __restrict__ x,
                                                const float* __restrict__ W,
                                                const float* __restrict__ A, float* __restrict__ p,
                                                int n, int in, int out, int rows, int j0, int c0,
                                                int len, bool vec, int lane,
                                                float (*part)[LORA_WARP_SIZE + 1]) {
  float acc[NB][LORA_SMALL_R];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < LORA_SMALL_R; ++q) acc[i][q] = 0.0f;
  }

  if (vec)
    lora_small_rows<NB, float4>(x, W, A, n, in, out, rows, j0, c0, len, lane, acc);
  else
    lora_small_rows<NB, float>(x, W, A, n, in, out, rows, j0, c0, len, lane, acc);

  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < LORA_SMALL_R; ++q) part[i * LORA_SMALL_R + q][lane] = acc[i][q];
  }
  __syncwarp();

  for (int v = lane; v < NB * LORA_SMALL_R; v += LORA_WARP_SIZE) {
    const int i = v / LORA_SMALL_R;
    const int j = j0 + v % LORA_SMALL_R;
    if (i < n && j < rows) {
      float sum = 0.0f;
      LORA_UNROLL
      for (int l = 0; l < LORA_WARP_SIZE; ++l) sum += part[v][l];
      p[static_cast<long long>(i) * rows + j] = sum;
    }
  }
}

extern "C" __global__ void __launch_bounds__(LORA_SMALL_THREADS, 2)
    lora_forward_small(const float* __restrict__ x, const float* __restrict__ W,
                       const float* __restrict__ A, float* __restrict__ P, int n, int in,
                       int out, int r) {
  __shared__ float part[LORA_SMALL_WARPS][LORA_SMALL_N_MAX * LORA_SMALL_R][LORA_WARP_SIZE + 1];

  if (blockDim.x != LORA_SMALL_THREADS) return;  // the tiling needs this exact block
  if (n < 1 || n > LORA_SMALL_N_MAX) return;
  const int rows = out + r;
  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int j0 = blockIdx.x * LORA_SMALL_ROWS_PER_BLOCK + warp * LORA_SMALL_R;
  if (j0 >= rows) return;  // the whole warp leaves together

  // This block's split of the inner dimension; an empty one writes zeros.
  const int per = (in + static_cast<int>(gridDim.y) - 1) / static_cast<int>(gridDim.y);
  const int chunk = (per + LORA_SMALL_SPLIT_ALIGN - 1) / LORA_SMALL_SPLIT_ALIGN * LORA_SMALL_SPLIT_ALIGN;
  const long long c0l = static_cast<long long>(blockIdx.y) * chunk;
  const int c0 = c0l < in ? static_cast<int>(c0l) : in;
  const int len = lora_min(chunk, in - c0);
  const bool vec = (in & 3) == 0 && lora_aligned16(x) && lora_aligned16(W) &&
                   (r == 0 || lora_aligned16(A));
  float* p = P + static_cast<long long>(blockIdx.y) * n * rows;

  float(*pw)[LORA_WARP_SIZE + 1] = part[warp];
  if (n == 1)
    lora_small_warp<1>(x, W, A, p, n, in, out, rows, j0, c0, len, vec, lane, pw);
  else if (n <= 2)
    lora_small_warp<2>(x, W, A, p, n, in, out, rows, j0, c0, len, vec, lane, pw);
  else if (n <= 4)
    lora_small_warp<4>(x, W, A, p, n, in, out, rows, j0, c0, len, vec, lane, pw);
  else if (n <= 8)
    lora_small_warp<8>(x, W, A, p, n, in, out, rows, j0, c0, len, vec, lane, pw);
  else
    lora_small_warp<16>(x, W, A, p, n, in, out, rows, j0, c0, len, vec, lane, pw);
}

#undef LORA_SMALL_R

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_forward_small)
#endif
