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

// The warps' partial sums meet in part: warps 4..7 store theirs, then
// warps 0..3 add theirs in.
template <int NB>
__device__ __forceinline__ void lora_gxs_meet(const float (&acc)[NB][4], int warp, int lane,
                                              float (*part)[LORA_SMALL_N_MAX][LORA_GXS_COLS]) {
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
  lora_gxs_meet<NB>(acc, warp, lane, part);
}

// Split blockIdx.y's sums of its block's columns: P + blockIdx.y*n*in
// (n x in) gets the four halves' sums, each element written once.
__device__ __forceinline__ void lora_gxs_store(float* __restrict__ P, int n, int in, int c0,
                                               const float (*part)[LORA_SMALL_N_MAX][LORA_GXS_COLS]) {
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
  lora_gxs_store(P, n, in, c0, part);
}

// ---- a W of 16-bit elements --------------------------------------------------
//
// lora_grad_x_small_f16 and lora_grad_x_small_bf16: the same product with W
// given as binary16 or bfloat16 patterns (LORA_F16, LORA_BF16), A, dy, U
// and P in float32, on the same grid and with the same meeting of the warps.
// Lane l still accumulates the four columns c = c0 + 4l, but W's rows are
// read in 16-byte loads of eight elements, two rows at a time: in a group of
// LORA_GXSH_ROWS rows j + u*LORA_GXS_WARPS of the warp, lanes 2m and 2m+1
// load columns c0 + 8m .. +7 of rows 2p and 2p+1 of the pair p (four 16-byte
// loads per lane, 16 KB in flight per block as in float32), then each keeps
// the half that holds its own columns and swaps the other with its partner
// (one shuffle of two words): lane 2m gets its columns of both rows, and so
// does 2m+1. The elements are widened in registers, exactly. A load whose 16
// bytes are not aligned (in % 8 != 0) or pass the row's end reads scalars
// clamped into the row. At n > 8, where 64 accumulators take their share of
// the registers, a group is half as many rows (8 KB in flight per block). The rows left after the
// groups, and A's rows (float32), are read one at a time: four elements per
// lane, 8 bytes of W where aligned, a float4 of A as lora_grad_x_small does.
//
// Global memory: reads W (out x in 16-bit) and A (r x in) once; dy and U
// through the cache; writes each element of P once. Shared memory:
// (LORA_GXS_WARPS/2)*LORA_SMALL_N_MAX*LORA_GXS_COLS +
// LORA_GXS_WARPS*LORA_SMALL_N_MAX*LORA_GXSH_ROWS floats (static).
#define LORA_GXSH_ROWS (2 * LORA_GXS_ROWS)

// The eight elements of row v at columns cc .. cc+7 as four words, the
// lower column in each low half: one 16-byte load where they are aligned and
// inside the row, else scalars clamped into the row (those past `in` are
// never stored).
__device__ __forceinline__ uint4 lora_gxsh_load8(const unsigned short* __restrict__ v, int cc,
                                                 int in) {
  if (cc + 7 < in && lora_aligned16(v + cc)) return __ldcs(reinterpret_cast<const uint4*>(v + cc));
  unsigned h[8];
  LORA_UNROLL
  for (int e = 0; e < 8; ++e) h[e] = __ldcs(v + lora_min(cc + e, in - 1));
  return make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
}

// The four elements of two packed words, widened.
template <int kDT>
__device__ __forceinline__ float4 lora_gxsh_widen4(unsigned w0, unsigned w1) {
  return make_float4(lora_lo<kDT>(w0), lora_hi<kDT>(w0),
                     lora_lo<kDT>(w1), lora_hi<kDT>(w1));
}

// q: what lora_gxsh_load8 gave this lane, row a's elements on an even lane,
// row b's on an odd one. a, b: this lane's four columns of rows a and b, as
// two packed words each.
__device__ __forceinline__ void lora_gxsh_split(uint4 q, int lane, uint2& a, uint2& b) {
  const bool odd = (lane & 1) != 0;
  // An even lane keeps q.x, q.y (its columns of row a) and sends q.z, q.w
  // (its partner's); an odd lane keeps q.z, q.w (its columns of row b) and
  // sends q.x, q.y.
  const unsigned g0 = __shfl_xor_sync(LORA_FULL_MASK, odd ? q.x : q.z, 1);
  const unsigned g1 = __shfl_xor_sync(LORA_FULL_MASK, odd ? q.y : q.w, 1);
  a = odd ? make_uint2(g0, g1) : make_uint2(q.x, q.y);
  b = odd ? make_uint2(q.z, q.w) : make_uint2(g0, g1);
}

__device__ __forceinline__ void lora_gxsh_fma(float k, float4 m, float (&acc)[4]) {
  acc[0] = fmaf(k, m.x, acc[0]);
  acc[1] = fmaf(k, m.y, acc[1]);
  acc[2] = fmaf(k, m.z, acc[2]);
  acc[3] = fmaf(k, m.w, acc[3]);
}

// acc[i][e] += sum over the rows j = j0 + warp, + LORA_GXS_WARPS, ... < j1
// of C[i,j] * V[j,c0+4*lane+e], for i < NB, V = [W ; A], C = [dy | U]; rows
// i >= n use row n-1, and their sums are discarded. The groups of rows take
// rows of W only; the rows left, of W and of A, are read one at a time (in
// one loop, which keeps the accumulators' registers to themselves).
template <int kDT, int NB>
__device__ __forceinline__ void lora_gxsh_rows(const float* __restrict__ dy,
                                               const unsigned short* __restrict__ W,
                                               const float* __restrict__ U,
                                               const float* __restrict__ A, int n, int in, int out,
                                               int r, int j0, int j1, int c0, bool vec_a, int warp,
                                               int lane, float* __restrict__ sc,
                                               float (&acc)[NB][4]) {
  const int jw1 = lora_min(j1, out);
  // Row pairs per group: at n > 8 the 64 accumulators leave room for two.
  constexpr int kPairs = NB > 8 ? LORA_GXSH_ROWS / 4 : LORA_GXSH_ROWS / 2;
  constexpr int kRows = 2 * kPairs;
  const int cc = c0 + 8 * (lane >> 1);
  const int odd = lane & 1;
  int j = j0 + warp;
  LORA_NO_UNROLL
  for (; j + (kRows - 1) * LORA_GXS_WARPS < jw1; j += kRows * LORA_GXS_WARPS) {
    uint4 m[kPairs];
    LORA_UNROLL
    for (int p = 0; p < kPairs; ++p)
      m[p] = lora_gxsh_load8(W + static_cast<long long>(j + (2 * p + odd) * LORA_GXS_WARPS) * in, cc, in);
    for (int e = lane; e < NB * kRows; e += LORA_WARP_SIZE)
      sc[e] = __ldg(dy + static_cast<long long>(lora_min(e / kRows, n - 1)) * out + j +
                    (e % kRows) * LORA_GXS_WARPS);
    __syncwarp();
    LORA_UNROLL
    for (int p = 0; p < kPairs; ++p) {
      uint2 a, b;
      lora_gxsh_split(m[p], lane, a, b);
      const float4 va = lora_gxsh_widen4<kDT>(a.x, a.y);
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) lora_gxsh_fma(sc[i * kRows + 2 * p], va, acc[i]);
      const float4 vb = lora_gxsh_widen4<kDT>(b.x, b.y);
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) lora_gxsh_fma(sc[i * kRows + 2 * p + 1], vb, acc[i]);
    }
    __syncwarp();  // every lane has read sc before the next group overwrites it
  }
  const int c = c0 + 4 * lane;
  LORA_NO_UNROLL
  for (; j < j1; j += LORA_GXS_WARPS) {
    float4 m;
    if (j < out) {
      const unsigned short* v = W + static_cast<long long>(j) * in;
      if (c + 3 < in && (reinterpret_cast<uintptr_t>(v + c) & 7u) == 0) {
        const uint2 u = __ldcs(reinterpret_cast<const uint2*>(v + c));
        m = lora_gxsh_widen4<kDT>(u.x, u.y);
      } else {
        m = make_float4(lora_widen<kDT>(__ldcs(v + lora_min(c, in - 1))),
                        lora_widen<kDT>(__ldcs(v + lora_min(c + 1, in - 1))),
                        lora_widen<kDT>(__ldcs(v + lora_min(c + 2, in - 1))),
                        lora_widen<kDT>(__ldcs(v + lora_min(c + 3, in - 1))));
      }
    } else {
      m = lora_gxs_load(A + static_cast<long long>(j - out) * in, c, in, vec_a);
    }
    LORA_UNROLL
    for (int i = 0; i < NB; ++i) lora_gxsh_fma(lora_gxs_coef(dy, U, lora_min(i, n - 1), j, out, r), m, acc[i]);
  }
}

// One warp's share for NB >= n rows of dy, met with the other warps' in part.
template <int kDT, int NB>
__device__ __forceinline__ void lora_gxsh_warp(const float* __restrict__ dy,
                                               const unsigned short* __restrict__ W,
                                               const float* __restrict__ U,
                                               const float* __restrict__ A, int n, int in, int out,
                                               int r, int j0, int j1, int c0, bool vec_a, int warp,
                                               int lane, float* __restrict__ sc,
                                               float (*part)[LORA_SMALL_N_MAX][LORA_GXS_COLS]) {
  float acc[NB][4];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int e = 0; e < 4; ++e) acc[i][e] = 0.0f;
  }
  lora_gxsh_rows<kDT, NB>(dy, W, U, A, n, in, out, r, j0, j1, c0, vec_a, warp, lane, sc, acc);
  lora_gxs_meet<NB>(acc, warp, lane, part);
}

template <int kDT>
__device__ __forceinline__ void lora_grad_x_small_half(const float* __restrict__ dy,
                                                       const unsigned short* __restrict__ W,
                                                       const float* __restrict__ U,
                                                       const float* __restrict__ A,
                                                       float* __restrict__ P, int n, int in,
                                                       int out, int r) {
  __shared__ __align__(16) float part[LORA_GXS_WARPS / 2][LORA_SMALL_N_MAX][LORA_GXS_COLS];
  __shared__ float coef[LORA_GXS_WARPS][LORA_SMALL_N_MAX * LORA_GXSH_ROWS];
  if (blockDim.x != LORA_GXS_THREADS) return;  // the tiling needs this exact block
  if (n < 1 || n > LORA_SMALL_N_MAX) return;

  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int c0 = blockIdx.x * LORA_GXS_COLS;
  const int rows = out + r;
  const int chunk = (rows + static_cast<int>(gridDim.y) - 1) / static_cast<int>(gridDim.y);
  const long long j0l = static_cast<long long>(blockIdx.y) * chunk;
  const int j0 = j0l < rows ? static_cast<int>(j0l) : rows;
  const int j1 = lora_min(rows, j0 + chunk);
  const bool vec_a = (in & 3) == 0 && (r == 0 || lora_aligned16(A));

  if (n == 1)
    lora_gxsh_warp<kDT, 1>(dy, W, U, A, n, in, out, r, j0, j1, c0, vec_a, warp, lane, coef[warp], part);
  else if (n <= 2)
    lora_gxsh_warp<kDT, 2>(dy, W, U, A, n, in, out, r, j0, j1, c0, vec_a, warp, lane, coef[warp], part);
  else if (n <= 4)
    lora_gxsh_warp<kDT, 4>(dy, W, U, A, n, in, out, r, j0, j1, c0, vec_a, warp, lane, coef[warp], part);
  else if (n <= 8)
    lora_gxsh_warp<kDT, 8>(dy, W, U, A, n, in, out, r, j0, j1, c0, vec_a, warp, lane, coef[warp], part);
  else
    lora_gxsh_warp<kDT, 16>(dy, W, U, A, n, in, out, r, j0, j1, c0, vec_a, warp, lane, coef[warp], part);
  __syncthreads();
  lora_gxs_store(P, n, in, c0, part);
}

extern "C" __global__ void __launch_bounds__(LORA_GXS_THREADS, 2)
    lora_grad_x_small_f16(const float* __restrict__ dy, const __half* __restrict__ W,
                          const float* __restrict__ U, const float* __restrict__ A,
                          float* __restrict__ P, int n, int in, int out, int r) {
  lora_grad_x_small_half<LORA_F16>(dy, lora_bits(W), U, A, P, n, in, out, r);
}

extern "C" __global__ void __launch_bounds__(LORA_GXS_THREADS, 2)
    lora_grad_x_small_bf16(const float* __restrict__ dy, const __nv_bfloat16* __restrict__ W,
                           const float* __restrict__ U, const float* __restrict__ A,
                           float* __restrict__ P, int n, int in, int out, int r) {
  lora_grad_x_small_half<LORA_BF16>(dy, lora_bits(W), U, A, P, n, in, out, r);
}

#undef LORA_GXSH_ROWS

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_grad_x_small)
LORA_EMU_REGISTER(lora_grad_x_small_f16)
LORA_EMU_REGISTER(lora_grad_x_small_bf16)
#endif
