// backward_small.cu: dx = dy * W + U * A for small batches, n <= LORA_SMALL_N_MAX,
// the rows of [W ; A] split over the grid's y.
//
// P[z][i,c] = sum over the rows j of split z of C[i,j] * V[j,c], with
// V = [W ; A] the (out + r) x in stack and C = [dy | U] the n x (out + r)
// coefficients, fp32 accumulation. With U = s * dy * B (lora_grad_u) the sum
// over the splits is the input gradient of an unmerged layer; with r == 0
// (U and A may be null) it is dy * W, that of a merged one. Split z of
// S = gridDim.y takes rows [z*chunk, min(out + r, (z+1)*chunk)),
// chunk = ceil((out + r) / S), and writes P + z*n*in (n x in); with S == 1,
// P is dx. lora_forward_reduce (r = 0) sums the splits in order.
//
// At small n the product is bound by the bandwidth of reading W, whose rows
// run along dx's columns. Block (b, z) owns the LORA_GXS_COLS columns
// c0 = b*LORA_GXS_COLS ... of dx, lane l the four columns c0 + 4l .. +3, so
// that a warp reads each row segment W[j, c0 .. c0+127] as one coalesced
// 512-byte float4 load (scalars when in % 4 != 0 or a pointer is not 16-byte
// aligned), with an evict-first hint. The block's LORA_GXS_WARPS warps split
// the rows: warp w takes rows j0 + w, j0 + w + LORA_GXS_WARPS, ...,
// LORA_GXS_ROWS at a time, so that a lane keeps LORA_GXS_ROWS float4 loads
// of W in flight (16 KB per block, two blocks per SM). Every lane keeps 4n
// accumulators; the coefficients of a group of rows, the same for the whole
// warp, are loaded by its lanes into the warp's slice of shared memory while
// the W loads are in flight and read back as broadcasts: held in registers
// they took ~250 of them at n = 16 and left one block per SM. The warps'
// partial sums meet in shared memory (warps 4..7 store, warps 0..3 add, then
// every thread sums four) and P is written once, never read.
//
// Global memory: reads W (out x in) and A (r x in) once; dy (n x out) and
// U (n x r) through the cache; writes each element of P (S x n x in) once.
// Shared memory: (LORA_GXS_WARPS/2)*LORA_SMALL_N_MAX*LORA_GXS_COLS +
// LORA_GXS_WARPS*LORA_SMALL_N_MAX*LORA_GXS_ROWS floats (static).
#include "common.cuh"

static_assert(LORA_GXS_WARPS * LORA_WARP_SIZE == LORA_GXS_THREADS &&
                  LORA_GXS_COLS == 4 * LORA_WARP_SIZE && LORA_GXS_WARPS == 8,
              "lora_grad_x_small: four columns per lane, eight warps split the rows");

// The four values of row v at columns c .. c+3, clamped into the row (the
// values past `in` are never stored); one float4 when vec.
__device__ __forceinline__ float4 lora_gxs_load(const float* __restrict__ v, int c, int in,
                                                bool vec) {
  if (vec) return __ldcs(reinterpret_cast<const float4*>(v + lora_min(c, in - 4)));
  return make_float4(__ldcs(v + lora_min(c, in - 1)), __ldcs(v + lora_min(c + 1, in - 1)),
                     __ldcs(v + lora_min(c + 2, in - 1)), __ldcs(v + lora_min(c + 3, in - 1)));
}

// Row j of V = [W ; A] and column j of C = [dy | U] for batch row i.
__device__ __forceinline__ const float* lora_gxs_vrow(const float* __restrict__ W,
                                                      const float* __restrict__ A, int j, int in,
                                                      int out) {
  return j < out ? W + static_cast<long long>(j) * in : A + static_cast<long long>(j - out) * in;
}
__device__ __forceinline__ float lora_gxs_coef(const float* __restrict__ dy,
                                               const float* __restrict__ U, int i, int j, int out,
                                               int r) {
  return j < out ? __ldg(dy + static_cast<long long>(i) * out + j)
                 : __ldg(U + static_cast<long long>(i) * r + (j - out));
}

// acc[i][e] += sum over rows j = j0 + warp, + LORA_GXS_WARPS, ... < j1 of
// C[i,j] * V[j,c+e], for i < NB; rows i >= n use row n-1, and their sums are
// discarded.
template <int NB>
__device__ __forceinline__ void lora_gxs_rows(const float* __restrict__ dy,
                                              const float* __restrict__ W,
                                              const float* __restrict__ U,
                                              const float* __restrict__ A, int n, int in, int out,
                                              int r, int j0, int j1, int c, bool vec, int warp,
                                              int lane, float* __restrict__ sc,
                                              float (&acc)[NB][4]) {
  int j = j0 + warp;
  LORA_NO_UNROLL
  for (; j + (LORA_GXS_ROWS - 1) * LORA_GXS_WARPS < j1; j += LORA_GXS_ROWS * LORA_GXS_WARPS) {
    float4 m[LORA_GXS_ROWS];
    LORA_UNROLL
    for (int u = 0; u < LORA_GXS_ROWS; ++u)
      m[u] = lora_gxs_load(lora_gxs_vrow(W, A, j + u * LORA_GXS_WARPS, in, out), c, in, vec);
    // The group's NB x LORA_GXS_ROWS coefficients, one or two per lane,
    // through the warp's slice of shared memory: loaded while W's are in
    // flight, without holding them all in registers.
    for (int e = lane; e < NB * LORA_GXS_ROWS; e += LORA_WARP_SIZE)
      sc[e] = lora_gxs_coef(dy, U, lora_min(e / LORA_GXS_ROWS, n - 1),
                            j + (e % LORA_GXS_ROWS) * LORA_GXS_WARPS, out, r);
    __syncwarp();
    LORA_UNROLL
    for (int u = 0; u < LORA_GXS_ROWS; ++u) {
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) {
        const float k = sc[i * LORA_GXS_ROWS + u];
        acc[i][0] = fmaf(k, m[u].x, acc[i][0]);
        acc[i][1] = fmaf(k, m[u].y, acc[i][1]);
        acc[i][2] = fmaf(k, m[u].z, acc[i][2]);
        acc[i][3] = fmaf(k, m[u].w, acc[i][3]);
      }
    }
    __syncwarp();  // every lane has read sc before the next group overwrites it
  }
  LORA_NO_UNROLL
  for (; j < j1; j += LORA_GXS_WARPS) {
    const float4 m = lora_gxs_load(lora_gxs_vrow(W, A, j, in, out), c, in, vec);
    LORA_UNROLL
    for (int i = 0; i < NB; ++i) {
      const float k = lora_gxs_coef(dy, U, lora_min(i, n - 1), j, out, r);
      acc[i][0] = fmaf(k, m.x, acc[i][0]);
      acc[i][1] = fmaf(k, m.y, acc[i][1]);
      acc[i][2] = fmaf(k, m.z, acc[i][2]);
      acc[i][3] = fmaf(k, m.w, acc[i][3]);
    }
  }
}

// One warp's share for NB >= n rows of dy, met with the other warps' in part.
template <int NB>
__device__ __forceinline__ void lora_gxs_warp(const float* __restrict__ dy, const float* __restrict__ W,
                                              const float* __restrict__ U, const float* __restrict__ A,
                                              int n, int in, int out, int r, int j0, int j1, int c,
                                              bool vec, int warp, int lane, float* __restrict__ sc,
                                              float (*part)[LORA_SMALL_N_MAX][LORA_GXS_COLS]) {
  float acc[NB][4];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int e = 0; e < 4; ++e) acc[i][e] = 0.0f;
  }
  lora_gxs_rows<NB>(dy, W, U, A, n, in, out, r, j0, j1, c, vec, warp, lane, sc, acc);
  const int h = warp % (LORA_GXS_WARPS / 2);
  if (warp >= LORA_GXS_WARPS / 2) {
    LORA_UNROLL
    for (int i = 0; i < NB; ++i)
      *reinterpret_cast<float4*>(&part[h][i][lane * 4]) =
          make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
  }
  __syncthreads();
  if (warp < LORA_GXS_WARPS / 2) {
    LORA_UNROLL
    for (int i = 0; i < NB; ++i) {
      float4 v = *reinterpret_cast<const float4*>(&part[h][i][lane * 4]);
      v.x += acc[i][0];
      v.y += acc[i][1];
      v.z += acc[i][2];
      v.w += acc[i][3];
      *reinterpret_cast<float4*>(&part[h][i][lane * 4]) = v;
    }
  }
}

extern "C" __global__ void __launch_bounds__(LORA_GXS_THREADS, 2)
    lora_grad_x_small(const float* __restrict__ dy, const float* __restrict__ W,
                      const float* __restrict__ U, const float* __restrict__ A,
                      float* __restrict__ P, int n, int in, int out, int r) {
  __shared__ __align__(16) float part[LORA_GXS_WARPS / 2][LORA_SMALL_N_MAX][LORA_GXS_COLS];
  __shared__ float coef[LORA_GXS_WARPS][LORA_SMALL_N_MAX * LORA_GXS_ROWS];
  if (blockDim.x != LORA_GXS_THREADS) return;  // the tiling needs this exact block
  if (n < 1 || n > LORA_SMALL_N_MAX) return;

  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int c0 = blockIdx.x * LORA_GXS_COLS;
  const int c = c0 + lane * 4;
  const int rows = out + r;
  const int chunk = (rows + static_cast<int>(gridDim.y) - 1) / static_cast<int>(gridDim.y);
  const long long j0l = static_cast<long long>(blockIdx.y) * chunk;
  const int j0 = j0l < rows ? static_cast<int>(j0l) : rows;
  const int j1 = lora_min(rows, j0 + chunk);
  const bool vec = (in & 3) == 0 && lora_aligned16(W) && (r == 0 || lora_aligned16(A));

  if (n == 1)
    lora_gxs_warp<1>(dy, W, U, A, n, in, out, r, j0, j1, c, vec, warp, lane, coef[warp], part);
  else if (n <= 2)
    lora_gxs_warp<2>(dy, W, U, A, n, in, out, r, j0, j1, c, vec, warp, lane, coef[warp], part);
  else if (n <= 4)
    lora_gxs_warp<4>(dy, W, U, A, n, in, out, r, j0, j1, c, vec, warp, lane, coef[warp], part);
  else if (n <= 8)
    lora_gxs_warp<8>(dy, W, U, A, n, in, out, r, j0, j1, c, vec, warp, lane, coef[warp], part);
  else
    lora_gxs_warp<16>(dy, W, U, A, n, in, out, r, j0, j1, c, vec, warp, lane, coef[warp], part);
  __syncthreads();

  float* p = P + static_cast<long long>(blockIdx.y) * n * in;
  for (int v = threadIdx.x; v < n * LORA_GXS_COLS; v += LORA_GXS_THREADS) {
    const int i = v / LORA_GXS_COLS;
    const int cc = v % LORA_GXS_COLS;
    if (c0 + cc >= in) continue;
    float sum = 0.0f;
    LORA_UNROLL
    for (int w = 0; w < LORA_GXS_WARPS / 2; ++w) sum += part[w][i][cc];
    p[static_cast<long long>(i) * in + c0 + cc] = sum;
  }
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_grad_x_small)
#endif
