// nf4.cu: the kernels that read an NF4 W (bitsandbytes' 4-bit NormalFloat).
//
// An NF4 matrix of count elements, numbered in row-major order, is its
// codes, two a byte (the element of even index in the high nibble), and its
// float32 absmax, one per block of `block` consecutive elements (a block may
// straddle rows). Element f has the value lora_nf4_entry(code f) *
// absmax[(f >> sh)], one float32 rounding, and every kernel here forms
// exactly that value before it uses it (the product is never fused into an
// FMA). The 16 entries of the table live in shared memory, written by a
// block's first 16 threads.
//
//   lora_forward_small_nf4(x, W, absmax, A, P, n, in, out, r, block)
//     P[z] = x * [W ; A]^T over split z of the inner dimension, on the
//     geometry of lora_forward_small, for every n: the grid's z takes the
//     rows of x LORA_SMALL_N_MAX at a time (W is streamed once per such
//     chunk, so the kernel is fast at small n and correct at any).
//   lora_grad_x_small_nf4(dy, W, absmax, U, A, P, n, in, out, r, block)
//     P[z] = [dy | U] * [W ; A] over split z of the rows of [W ; A], on the
//     geometry of lora_grad_x_small, for every n: the grid's z again takes
//     the rows of dy LORA_SMALL_N_MAX at a time.
//   lora_dequantize_nf4_f32, _f16, _bf16(codes, absmax, dst, count, block)
//     dst[f] = the value of element f, rounded to dst's type.
//
// The tiled kernels' NF4 forms, for larger n (the planner chooses by
// modelled time), live beside their float forms, on their geometry:
//   lora_forward_m16_nf4, _m32_, _m64_(x, W, absmax, A, P, n, in, out, r, block)
//     (forward_mtile.cu), lora_forward_tiled_nf4(x, W, absmax, T, B, y, n,
//     in, out, r, block) (forward_tiled.cu), lora_grad_x_tiled_nf4(dy, W,
//     absmax, U, A, dx, n, in, out, r, block) (backward_tiled.cu).
// Each loads a K-step of W as runs of eight consecutive elements, a run
// being what the 16-bit forms load as one 16-byte vector: one 32-bit word
// of eight codes and its block's absmax where in % 8 == 0 and the codes
// are 4-byte aligned (a run then starts at a multiple of 8 and lies in one
// block of >= 8), code by code otherwise (a run may then cross a row's end,
// past which it reads nothing, or two blocks, each element taking its own
// absmax). lora_fetch8_nf4 and lora_unpack8_nf4 (tile_load.cuh) do this;
// the codes and absmax stay in registers while the step before is
// multiplied, and are dequantized as they are stored to shared memory.
//
// CUDA cores, not tensor cores. The values table[code] * absmax are not
// bf16 (nor f16) values in general: their significands carry up to 24
// bits, so rounding them to feed mma.sync would change every product, and
// an exact split (hi + lo in two bf16 each for W, and x split alike: three
// or four mma per product) costs as many tensor-core passes as it saves
// over the CUDA cores at the n where the tiles run, while doubling the
// shared memory. The NF4 tiled kernels therefore dequantize into the
// float32 shared-memory tiles of the CUDA-core kernels: each product is
// the exact product of x's float32 element and W's float32 value, summed
// in float32 with FMAs, as every other float32 kernel sums. No full
// dequantized copy of W is made: a block holds in shared memory one K-step
// of its tile of W's rows in float32, double-buffered in the 128x128
// kernels (2 x 8 x 132 floats, 8.4 KB, of the 16.9 KB they use with x's
// tile) and single in the m-tiles (32 x 132 floats, 16.9 KB, beside x's 32
// x (BM + 1)); plus the 16-entry table (64 bytes).
#include "common.cuh"

// The value of element f, read on its own: its byte, its nibble, its
// block's absmax.
__device__ __forceinline__ float lora_nf4_at(const unsigned char* __restrict__ codes,
                                             const float* __restrict__ absmax, int sh,
                                             long long f, const float* tab) {
  const unsigned b = __ldcs(codes + (f >> 1));
  const unsigned k = (f & 1) != 0 ? b & 15u : b >> 4;
  return tab[k] * __ldg(absmax + (f >> sh));
}

// The eight values of the 32-bit word w of codes (eight consecutive
// elements from an even index, all in one block of scale am), in order:
// byte m holds elements 2m (high nibble) and 2m + 1 (low nibble).
__device__ __forceinline__ void lora_nf4_word(unsigned w, float am, const float* tab,
                                              float (&v)[8]) {
  LORA_UNROLL
  for (int m = 0; m < 4; ++m) {
    v[2 * m] = tab[(w >> (8 * m + 4)) & 15u] * am;
    v[2 * m + 1] = tab[(w >> (8 * m)) & 15u] * am;
  }
}

// ---- forward ---------------------------------------------------------------
//
// Warp w of block (b, z, c) owns rows j0 .. j0+3 of V = [W ; A] (as in
// lora_forward_small) and rows c*LORA_SMALL_N_MAX .. +15 of x. A block of W's
// rows reads codes: where in % 32 == 0, block % 32 == 0 and W and x are
// 16-byte aligned, each lane streams 16-byte vectors of 32 codes (one
// absmax each: the 32 elements start at a multiple of 32 and lie in one
// block) with an evict-first hint, two or one of each row in flight (see
// lora_nf4_fwd_rows), decodes them eight at a time in registers and reads
// the matching x as float4 through the read-only cache;
// otherwise (in odd included) element by element, each with its own byte and
// absmax. A block of A's rows is lora_forward_small's float32 path itself.
// The lane partials meet in shared memory as in lora_forward_small.
//
// Global memory: reads W's codes and absmax and A once per chunk of 16 rows
// of x; x through the cache; writes each element of P (gridDim.y x n x
// (out + r)) once. Shared memory: as lora_forward_small, plus the table.

#define LORA_NF4_R LORA_SMALL_ROWS_PER_WARP

// acc[i][q] += x[i][c .. c+31] . (the 32 values of the vector w[q] of
// codes, scale am[q]), c = 32 * v of the split, rows i >= n clamped to n - 1.
template <int NB>
__device__ __forceinline__ void lora_nf4_fwd_vec(const float* __restrict__ xs, int n, int in, int v,
                                                 const uint4 (&w)[LORA_NF4_R],
                                                 const float (&am)[LORA_NF4_R], const float* tab,
                                                 float (&acc)[NB][LORA_NF4_R]) {
  LORA_NO_UNROLL
  for (int h = 0; h < 4; ++h) {  // word h: elements 8h .. 8h+7 of the vector
    float wf[LORA_NF4_R][8];
    LORA_UNROLL
    for (int q = 0; q < LORA_NF4_R; ++q)
      lora_nf4_word(h == 0 ? w[q].x : h == 1 ? w[q].y : h == 2 ? w[q].z : w[q].w, am[q], tab, wf[q]);
    LORA_UNROLL
    for (int i = 0; i < NB; ++i) {
      const float4* xp =
          reinterpret_cast<const float4*>(xs + static_cast<long long>(lora_min(i, n - 1)) * in + 32 * v + 8 * h);
      const float4 a = __ldg(xp), b = __ldg(xp + 1);
      const float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
      LORA_UNROLL
      for (int q = 0; q < LORA_NF4_R; ++q) {
        LORA_UNROLL
        for (int e = 0; e < 8; ++e) acc[i][q] = fmaf(xv[e], wf[q][e], acc[i][q]);
      }
    }
  }
}

// acc[i][q] += sum over c < len of x[i][c0 + c] * W[jq][c0 + c], jq =
// min(j0 + q, out - 1), rows i >= n clamped to n - 1 (their sums are
// discarded). On the vector path a lane issues the loads of
// LORA_NF4_U(NB) vectors of each row before using any: 2 up to 4 rows of x
// (where the layer is bandwidth-bound, 16 KB in flight per block), 1 beyond
// (the accumulators' registers); plan.NF4SmallUnroll mirrors it.
#define LORA_NF4_U(NB) ((NB) <= 4 ? 2 : 1)
template <int NB>
__device__ __forceinline__ void lora_nf4_fwd_rows(const float* __restrict__ x,
                                                  const unsigned char* __restrict__ W,
                                                  const float* __restrict__ absmax, int sh, int n,
                                                  int in, int out, int j0, int c0, int len, bool vec,
                                                  int lane, const float* tab,
                                                  float (&acc)[NB][LORA_NF4_R]) {
  long long f0[LORA_NF4_R];  // the flat index of element (jq, c0)
  LORA_UNROLL
  for (int q = 0; q < LORA_NF4_R; ++q) f0[q] = static_cast<long long>(lora_min(j0 + q, out - 1)) * in + c0;
  const float* xs = x + c0;
  if (vec) {
    constexpr int U = LORA_NF4_U(NB);
    const int nv = len / 32;
    int v = lane;
    LORA_NO_UNROLL
    for (; v + (U - 1) * LORA_WARP_SIZE < nv; v += U * LORA_WARP_SIZE) {
      uint4 w[U][LORA_NF4_R];
      float am[U][LORA_NF4_R];
      LORA_UNROLL
      for (int u = 0; u < U; ++u) {
        LORA_UNROLL
        for (int q = 0; q < LORA_NF4_R; ++q) {
          const long long f = f0[q] + 32LL * (v + u * LORA_WARP_SIZE);
          w[u][q] = __ldcs(reinterpret_cast<const uint4*>(W + (f >> 1)));
          am[u][q] = __ldg(absmax + (f >> sh));
        }
      }
      LORA_UNROLL
      for (int u = 0; u < U; ++u) lora_nf4_fwd_vec<NB>(xs, n, in, v + u * LORA_WARP_SIZE, w[u], am[u], tab, acc);
    }
    LORA_NO_UNROLL
    for (; v < nv; v += LORA_WARP_SIZE) {
      uint4 w[LORA_NF4_R];
      float am[LORA_NF4_R];
      LORA_UNROLL
      for (int q = 0; q < LORA_NF4_R; ++q) {
        const long long f = f0[q] + 32LL * v;
        w[q] = __ldcs(reinterpret_cast<const uint4*>(W + (f >> 1)));
        am[q] = __ldg(absmax + (f >> sh));
      }
      lora_nf4_fwd_vec<NB>(xs, n, in, v, w, am, tab, acc);
    }
  } else {
    LORA_NO_UNROLL
    for (int c = lane; c < len; c += LORA_WARP_SIZE) {
      float wv[LORA_NF4_R];
      LORA_UNROLL
      for (int q = 0; q < LORA_NF4_R; ++q) wv[q] = lora_nf4_at(W, absmax, sh, f0[q] + c, tab);
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) {
        const float xv = __ldg(xs + static_cast<long long>(lora_min(i, n - 1)) * in + c);
        LORA_UNROLL
        for (int q = 0; q < LORA_NF4_R; ++q) acc[i][q] = fmaf(xv, wv[q], acc[i][q]);
      }
    }
  }
}
#undef LORA_NF4_U

// One warp's rows of W for NB >= n rows of x, met through part (as
// lora_small_warp) and written to p, whose rows are `rows` long.
template <int NB>
__device__ __forceinline__ void lora_nf4_fwd_warp(const float* __restrict__ x,
                                                  const unsigned char* __restrict__ W,
                                                  const float* __restrict__ absmax, int sh,
                                                  float* __restrict__ p, int n, int in, int out,
                                                  int rows, int j0, int c0, int len, bool vec,
                                                  int lane, const float* tab,
                                                  float (*part)[LORA_WARP_SIZE + 1]) {
  float acc[NB][LORA_NF4_R];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < LORA_NF4_R; ++q) acc[i][q] = 0.0f;
  }
  lora_nf4_fwd_rows<NB>(x, W, absmax, sh, n, in, out, j0, c0, len, vec, lane, tab, acc);
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < LORA_NF4_R; ++q) part[i * LORA_NF4_R + q][lane] = acc[i][q];
  }
  __syncwarp();
  for (int v = lane; v < NB * LORA_NF4_R; v += LORA_WARP_SIZE) {
    const int i = v / LORA_NF4_R;
    const int j = j0 + v % LORA_NF4_R;
    if (i < n && j < out) {
      float sum = 0.0f;
      LORA_UNROLL
      for (int l = 0; l < LORA_WARP_SIZE; ++l) sum += part[v][l];
      p[static_cast<long long>(i) * rows + j] = sum;
    }
  }
}

extern "C" __global__ void __launch_bounds__(LORA_SMALL_THREADS, 2)
    lora_forward_small_nf4(const float* __restrict__ x, const unsigned char* __restrict__ W,
                           const float* __restrict__ absmax, const float* __restrict__ A,
                           float* __restrict__ P, int n, int in, int out, int r, int block) {
  __shared__ float part[LORA_SMALL_WARPS][LORA_SMALL_N_MAX * LORA_NF4_R][LORA_WARP_SIZE + 1];
  __shared__ float tab[16];

  if (blockDim.x != LORA_SMALL_THREADS) return;  // the tiling needs this exact block
  const int sh = lora_nf4_log2(block);
  if (n < 1 || sh < 0) return;
  lora_nf4_fill(tab);
  __syncthreads();

  const long long i0 = static_cast<long long>(blockIdx.z) * LORA_SMALL_N_MAX;
  if (i0 >= n) return;
  const int nz = lora_min(LORA_SMALL_N_MAX, n - static_cast<int>(i0));
  const int rows = out + r;
  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int wblocks = (out + LORA_SMALL_ROWS_PER_BLOCK - 1) / LORA_SMALL_ROWS_PER_BLOCK;
  const bool onA = static_cast<int>(blockIdx.x) >= wblocks;
  const int jb = onA ? out : 0;
  const int jend = onA ? rows : out;
  const int j0 = jb + (static_cast<int>(blockIdx.x) - (onA ? wblocks : 0)) * LORA_SMALL_ROWS_PER_BLOCK +
                 warp * LORA_NF4_R;
  if (j0 >= jend) return;  // the whole warp leaves together

  // This block's split of the inner dimension, as lora_forward_small's.
  const int per = (in + static_cast<int>(gridDim.y) - 1) / static_cast<int>(gridDim.y);
  const int chunk = (per + LORA_SMALL_SPLIT_ALIGN - 1) / LORA_SMALL_SPLIT_ALIGN * LORA_SMALL_SPLIT_ALIGN;
  const long long c0l = static_cast<long long>(blockIdx.y) * chunk;
  const int c0 = c0l < in ? static_cast<int>(c0l) : in;
  const int len = lora_min(chunk, in - c0);
  const float* xz = x + i0 * in;
  float* p = P + static_cast<long long>(blockIdx.y) * n * rows + i0 * rows;

  float(*pw)[LORA_WARP_SIZE + 1] = part[warp];
  if (onA) {
    const bool vec = (in & 3) == 0 && lora_aligned16(xz) && lora_aligned16(A);
    lora_small_source<LORA_F32, LORA_F32>(xz, A, p, nz, in, rows, jb, jend, j0, c0, len, vec, lane, pw);
    return;
  }
  const bool vec = (in & 31) == 0 && block >= 32 && lora_aligned16(xz) && lora_aligned16(W);
  if (nz == 1)
    lora_nf4_fwd_warp<1>(xz, W, absmax, sh, p, nz, in, out, rows, j0, c0, len, vec, lane, tab, pw);
  else if (nz <= 2)
    lora_nf4_fwd_warp<2>(xz, W, absmax, sh, p, nz, in, out, rows, j0, c0, len, vec, lane, tab, pw);
  else if (nz <= 4)
    lora_nf4_fwd_warp<4>(xz, W, absmax, sh, p, nz, in, out, rows, j0, c0, len, vec, lane, tab, pw);
  else if (nz <= 8)
    lora_nf4_fwd_warp<8>(xz, W, absmax, sh, p, nz, in, out, rows, j0, c0, len, vec, lane, tab, pw);
  else
    lora_nf4_fwd_warp<16>(xz, W, absmax, sh, p, nz, in, out, rows, j0, c0, len, vec, lane, tab, pw);
}

#undef LORA_NF4_R

// ---- dx = dy * W + U * A -----------------------------------------------------
//
// The geometry of lora_grad_x_small: block (b, y, z) owns columns c0 =
// b*LORA_GXS_COLS .. +127 of dx, lane l the four columns c0 + 4l .. +3, the
// block's warps split the rows j0 .. j1 of split y of [W ; A], rows
// z*LORA_SMALL_N_MAX .. +15 of dy. A row of W gives a lane its four columns
// as one 2-byte load of four codes (one absmax: they start at a multiple
// of 4 and lie in one block) where in % 4 == 0, LORA_GXS_ROWS rows loaded
// before any is used and their coefficients staged in shared memory as in
// lora_grad_x_small; else element by element, a row at a time (its
// coefficients staged alike). A row of A
// is a float4 as in lora_grad_x_small. The warps meet as in
// lora_grad_x_small.
//
// Global memory: reads W's codes and absmax and A once per chunk of 16 rows
// of dy; dy and U through the cache; writes each element of P (gridDim.y x
// n x in) once. Shared memory: (LORA_GXS_WARPS/2)*LORA_SMALL_N_MAX*
// LORA_GXS_COLS + LORA_GXS_WARPS*LORA_SMALL_N_MAX*LORA_GXS_ROWS floats and
// the table.

// This lane's four values of row j of [W ; A], at columns c .. c+3 (values
// past `in` are never stored: zeros, or the row's last).
__device__ __forceinline__ float4 lora_nf4_gx_load(const unsigned char* __restrict__ W,
                                                   const float* __restrict__ absmax, int sh,
                                                   const float* __restrict__ A, int j, int c,
                                                   int in, int out, bool vecw, bool veca,
                                                   const float* tab) {
  if (j >= out) return lora_gxs_load(A + static_cast<long long>(j - out) * in, c, in, veca);
  const long long f = static_cast<long long>(j) * in;
  if (vecw) {
    if (c >= in) return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const unsigned h = __ldcs(reinterpret_cast<const unsigned short*>(W + ((f + c) >> 1)));
    const float am = __ldg(absmax + ((f + c) >> sh));
    return make_float4(tab[(h >> 4) & 15u] * am, tab[h & 15u] * am, tab[(h >> 12) & 15u] * am,
                       tab[(h >> 8) & 15u] * am);
  }
  return make_float4(lora_nf4_at(W, absmax, sh, f + lora_min(c, in - 1), tab),
                     lora_nf4_at(W, absmax, sh, f + lora_min(c + 1, in - 1), tab),
                     lora_nf4_at(W, absmax, sh, f + lora_min(c + 2, in - 1), tab),
                     lora_nf4_at(W, absmax, sh, f + lora_min(c + 3, in - 1), tab));
}

template <int NB>
__device__ __forceinline__ void lora_nf4_gx_warp(const float* __restrict__ dy,
                                                 const unsigned char* __restrict__ W,
                                                 const float* __restrict__ absmax, int sh,
                                                 const float* __restrict__ U,
                                                 const float* __restrict__ A, int n, int in, int out,
                                                 int r, int j0, int j1, int c, bool vecw, bool veca,
                                                 int warp, int lane, const float* tab,
                                                 float* __restrict__ sc,
                                                 float (*part)[LORA_SMALL_N_MAX][LORA_GXS_COLS]) {
  float acc[NB][4];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int e = 0; e < 4; ++e) acc[i][e] = 0.0f;
  }
  constexpr int kRows = LORA_GXS_ROWS;
  int j = j0 + warp;
  LORA_NO_UNROLL
  for (; vecw && j + (kRows - 1) * LORA_GXS_WARPS < j1; j += kRows * LORA_GXS_WARPS) {
    float4 m[kRows];
    LORA_UNROLL
    for (int u = 0; u < kRows; ++u)
      m[u] = lora_nf4_gx_load(W, absmax, sh, A, j + u * LORA_GXS_WARPS, c, in, out, true, veca, tab);
    // The group's coefficients through the warp's slice of shared memory,
    // as lora_grad_x_small does: held in registers they would spill.
    for (int e = lane; e < NB * kRows; e += LORA_WARP_SIZE)
      sc[e] = lora_gxs_coef(dy, U, lora_min(e / kRows, n - 1), j + (e % kRows) * LORA_GXS_WARPS, out, r);
    __syncwarp();
    LORA_UNROLL
    for (int u = 0; u < kRows; ++u) {
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) lora_gxsh_fma(sc[i * kRows + u], m[u], acc[i]);
    }
    __syncwarp();  // every lane has read sc before the next group overwrites it
  }
  LORA_NO_UNROLL
  for (; j < j1; j += LORA_GXS_WARPS) {  // j is the same for the whole warp
    const float4 m = lora_nf4_gx_load(W, absmax, sh, A, j, c, in, out, vecw, veca, tab);
    if (lane < NB) sc[lane] = lora_gxs_coef(dy, U, lora_min(lane, n - 1), j, out, r);
    __syncwarp();
    LORA_UNROLL
    for (int i = 0; i < NB; ++i) lora_gxsh_fma(sc[i], m, acc[i]);
    __syncwarp();
  }
  lora_gxs_meet<NB>(acc, warp, lane, part);
}

extern "C" __global__ void __launch_bounds__(LORA_GXS_THREADS, 2)
    lora_grad_x_small_nf4(const float* __restrict__ dy, const unsigned char* __restrict__ W,
                          const float* __restrict__ absmax, const float* __restrict__ U,
                          const float* __restrict__ A, float* __restrict__ P, int n, int in,
                          int out, int r, int block) {
  __shared__ __align__(16) float part[LORA_GXS_WARPS / 2][LORA_SMALL_N_MAX][LORA_GXS_COLS];
  __shared__ float coef[LORA_GXS_WARPS][LORA_SMALL_N_MAX * LORA_GXS_ROWS];
  __shared__ float tab[16];
  if (blockDim.x != LORA_GXS_THREADS) return;  // the tiling needs this exact block
  const int sh = lora_nf4_log2(block);
  if (n < 1 || sh < 0) return;
  const long long i0 = static_cast<long long>(blockIdx.z) * LORA_SMALL_N_MAX;
  if (i0 >= n) return;  // the whole block leaves together
  lora_nf4_fill(tab);
  __syncthreads();

  const int nz = lora_min(LORA_SMALL_N_MAX, n - static_cast<int>(i0));
  const float* dyz = dy + i0 * out;
  const float* uz = r > 0 ? U + i0 * r : U;
  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int c0 = blockIdx.x * LORA_GXS_COLS;
  const int c = c0 + lane * 4;
  const int rows = out + r;
  const int chunk = (rows + static_cast<int>(gridDim.y) - 1) / static_cast<int>(gridDim.y);
  const long long j0l = static_cast<long long>(blockIdx.y) * chunk;
  const int j0 = j0l < rows ? static_cast<int>(j0l) : rows;
  const int j1 = lora_min(rows, j0 + chunk);
  const bool vecw = (in & 3) == 0 && block >= 4 && lora_aligned16(W);
  const bool veca = (in & 3) == 0 && (r == 0 || lora_aligned16(A));

  if (nz == 1)
    lora_nf4_gx_warp<1>(dyz, W, absmax, sh, uz, A, nz, in, out, r, j0, j1, c, vecw, veca, warp, lane, tab, coef[warp], part);
  else if (nz <= 2)
    lora_nf4_gx_warp<2>(dyz, W, absmax, sh, uz, A, nz, in, out, r, j0, j1, c, vecw, veca, warp, lane, tab, coef[warp], part);
  else if (nz <= 4)
    lora_nf4_gx_warp<4>(dyz, W, absmax, sh, uz, A, nz, in, out, r, j0, j1, c, vecw, veca, warp, lane, tab, coef[warp], part);
  else if (nz <= 8)
    lora_nf4_gx_warp<8>(dyz, W, absmax, sh, uz, A, nz, in, out, r, j0, j1, c, vecw, veca, warp, lane, tab, coef[warp], part);
  else
    lora_nf4_gx_warp<16>(dyz, W, absmax, sh, uz, A, nz, in, out, r, j0, j1, c, vecw, veca, warp, lane, tab, coef[warp], part);
  __syncthreads();

  // Split y's sums of this block's columns for rows i0 .. i0 + nz - 1.
  float* p = P + static_cast<long long>(blockIdx.y) * n * in + i0 * in;
  for (int v = threadIdx.x; v < nz * LORA_GXS_COLS; v += LORA_GXS_THREADS) {
    const int i = v / LORA_GXS_COLS;
    const int cc = v % LORA_GXS_COLS;
    if (c0 + cc >= in) continue;
    float sum = 0.0f;
    LORA_UNROLL
    for (int w = 0; w < LORA_GXS_WARPS / 2; ++w) sum += part[w][i][cc];
    p[static_cast<long long>(i) * in + c0 + cc] = sum;
  }
}

// ---- dequantize ----------------------------------------------------------------
//
// Thread t of block b handles the groups of 8 elements g = b*blockDim.x + t,
// + the grid's thread count, ...: one 32-bit word of codes (block % 8 == 0,
// so one absmax) and one 16-byte vector of a 16-bit dst (two float4 of
// float32) where codes are 4-byte and dst 16-byte aligned; element by element
// otherwise, and for the last count % 8 elements.
//
// Global memory: reads each code and absmax once (absmax through the
// cache), writes each element of dst once. Shared memory: the table.
template <int D>
__device__ __forceinline__ void lora_dequantize_nf4_impl(const unsigned char* __restrict__ codes,
                                                         const float* __restrict__ absmax,
                                                         typename lora_elem<D>::type* __restrict__ dst,
                                                         long long count, int block) {
  __shared__ float tab[16];
  const int sh = lora_nf4_log2(block);
  if (sh < 0) return;
  lora_nf4_fill(tab);
  __syncthreads();
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long groups = count / 8;
  if (block >= 8 && (reinterpret_cast<uintptr_t>(codes) & 3u) == 0 && lora_aligned16(dst)) {
    for (long long g = first; g < groups; g += stride) {
      float v[8];
      lora_nf4_word(__ldcs(reinterpret_cast<const unsigned*>(codes) + g), __ldg(absmax + ((8 * g) >> sh)), tab, v);
      lora_store8<D>(dst + 8 * g, v);
    }
  } else {
    for (long long i = first; i < 8 * groups; i += stride) lora_store1<D>(dst, i, lora_nf4_at(codes, absmax, sh, i, tab));
  }
  for (long long i = 8 * groups + first; i < count; i += stride)
    lora_store1<D>(dst, i, lora_nf4_at(codes, absmax, sh, i, tab));
}

#define LORA_DEQUANTIZE_KERNEL(name, D, DTY)                                                        \
  extern "C" __global__ void __launch_bounds__(LORA_CONVERT_THREADS)                                 \
      name(const unsigned char* __restrict__ codes, const float* __restrict__ absmax,               \
           DTY* __restrict__ dst, long long count, int block) {                                     \
    lora_dequantize_nf4_impl<D>(codes, absmax, lora_bits(dst), count, block);                     \
  }
LORA_DEQUANTIZE_KERNEL(lora_dequantize_nf4_f32, LORA_F32, float)
LORA_DEQUANTIZE_KERNEL(lora_dequantize_nf4_f16, LORA_F16, __half)
LORA_DEQUANTIZE_KERNEL(lora_dequantize_nf4_bf16, LORA_BF16, __nv_bfloat16)
#undef LORA_DEQUANTIZE_KERNEL

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_forward_small_nf4)
LORA_EMU_REGISTER(lora_grad_x_small_nf4)
LORA_EMU_REGISTER(lora_dequantize_nf4_f32)
LORA_EMU_REGISTER(lora_dequantize_nf4_f16)
LORA_EMU_REGISTER(lora_dequantize_nf4_bf16)
#endif
