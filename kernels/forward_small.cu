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
static_assert(LORA_SMALL_SPLIT_ALIGN % 8 == 0,
              "splits keep the alignment of 16-byte vectors of float32 and of 16-bit elements");

// lora_small_unit<DT, VEC>: how a lane reads its elements of a row of V. One
// load is E elements: a float4 (float32) or a 16-byte vector of eight 16-bit
// elements when VEC, one element otherwise. raw is what stays in flight
// until widen turns group h of it into G = min(E, 4) floats.
template <int DT, bool VEC>
struct lora_small_unit {  // scalar
  static constexpr int E = 1;
  typedef typename lora_elem<DT>::type elem;
  typedef elem raw;
  static __device__ __forceinline__ raw load(const elem* p, int c) { return __ldcs(p + c); }
  static __device__ __forceinline__ void widen(raw v, int, float (&f)[1]) { f[0] = lora_widen<DT>(v); }
};
template <>
struct lora_small_unit<LORA_F32, true> {
  static constexpr int E = 4;
  typedef float elem;
  typedef float4 raw;
  static __device__ __forceinline__ raw load(const elem* p, int c) {
    return __ldcs(reinterpret_cast<const float4*>(p) + c);
  }
  static __device__ __forceinline__ void widen(raw v, int, float (&f)[4]) {
    f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
  }
};
template <int DT>
struct lora_small_half_unit {
  static constexpr int E = 8;
  typedef unsigned short elem;
  typedef uint4 raw;
  static __device__ __forceinline__ raw load(const elem* p, int c) {
    return __ldcs(reinterpret_cast<const uint4*>(p) + c);
  }
  static __device__ __forceinline__ void widen(raw v, int h, float (&f)[4]) {
    const unsigned a = h == 0 ? v.x : v.z, b = h == 0 ? v.y : v.w;
    f[0] = lora_lo<DT>(a), f[1] = lora_hi<DT>(a), f[2] = lora_lo<DT>(b), f[3] = lora_hi<DT>(b);
  }
};
template <>
struct lora_small_unit<LORA_F16, true> : lora_small_half_unit<LORA_F16> {};
template <>
struct lora_small_unit<LORA_BF16, true> : lora_small_half_unit<LORA_BF16> {};

// f = x[c*G .. c*G + G-1] widened, through the read-only cache: a float4,
// or four 16-bit elements in one 8-byte load, or one element.
template <int G, int XT>
__device__ __forceinline__ void lora_small_x(const typename lora_elem<XT>::type* xr, int c,
                                             float (&f)[G]) {
  if constexpr (G == 1) {
    f[0] = lora_load1<XT>(xr, c);
  } else if constexpr (XT == LORA_F32) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(xr) + c);
    f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
  } else {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(xr) + c);
    f[0] = lora_lo<XT>(v.x), f[1] = lora_hi<XT>(v.x), f[2] = lora_lo<XT>(v.y), f[3] = lora_hi<XT>(v.y);
  }
}

// acc[i][q] += sum over c < len of xr[i][c] * wr[q][c], len counting loads
// of L (L::E elements each) and the row pointers already at the split's
// first element. U loads of each row per lane are issued before any is used,
// so that a lane keeps U*LORA_SMALL_ROWS_PER_WARP 16-byte loads of W in
// flight (LORA_SMALL_U: plan.SmallUnroll mirrors it); 16-bit elements are
// widened in registers, products accumulate in float32.
template <int NB, int U, class L, int XT>
__device__ __forceinline__ void lora_small_segment(const typename lora_elem<XT>::type* const (&xr)[NB],
                                                   const typename L::elem* const (&wr)[LORA_SMALL_R],
                                                   int len, int lane, float (&acc)[NB][LORA_SMALL_R]) {
  constexpr int E = L::E;
  constexpr int G = E < 4 ? E : 4;  // elements widened at a time: few registers
  int c = lane;
  LORA_NO_UNROLL
  for (; c + (U - 1) * LORA_WARP_SIZE < len; c += U * LORA_WARP_SIZE) {
    typename L::raw w[U][LORA_SMALL_R];
    LORA_UNROLL
    for (int u = 0; u < U; ++u) {
      LORA_UNROLL
      for (int q = 0; q < LORA_SMALL_R; ++q) w[u][q] = L::load(wr[q], c + u * LORA_WARP_SIZE);
    }
    LORA_UNROLL
    for (int u = 0; u < U; ++u) {
      // Not unrolled: the x loads of both groups hoisted together would
      // not fit the registers at NB = 16.
      LORA_NO_UNROLL
      for (int h = 0; h < E / G; ++h) {
        float wf[LORA_SMALL_R][G];
        LORA_UNROLL
        for (int q = 0; q < LORA_SMALL_R; ++q) L::widen(w[u][q], h, wf[q]);
        LORA_UNROLL
        for (int i = 0; i < NB; ++i) {
          float xv[G];
          lora_small_x<G, XT>(xr[i], (c + u * LORA_WARP_SIZE) * (E / G) + h, xv);
          LORA_UNROLL
          for (int q = 0; q < LORA_SMALL_R; ++q) {
            LORA_UNROLL
            for (int e = 0; e < G; ++e) acc[i][q] = fmaf(xv[e], wf[q][e], acc[i][q]);
          }
        }
      }
    }
  }
  LORA_NO_UNROLL
  for (; c < len; c += LORA_WARP_SIZE) {
    typename L::raw w[LORA_SMALL_R];
    LORA_UNROLL
    for (int q = 0; q < LORA_SMALL_R; ++q) w[q] = L::load(wr[q], c);
    LORA_NO_UNROLL
    for (int h = 0; h < E / G; ++h) {
      float wf[LORA_SMALL_R][G];
      LORA_UNROLL
      for (int q = 0; q < LORA_SMALL_R; ++q) L::widen(w[q], h, wf[q]);
      LORA_UNROLL
      for (int i = 0; i < NB; ++i) {
        float xv[G];
        lora_small_x<G, XT>(xr[i], c * (E / G) + h, xv);
        LORA_UNROLL
        for (int q = 0; q < LORA_SMALL_R; ++q) {
          LORA_UNROLL
          for (int e = 0; e < G; ++e) acc[i][q] = fmaf(xv[e], wf[q][e], acc[i][q]);
        }
      }
    }
  }
}

// acc += x[:, c0 : c0+len] . S[j0 - jb .., c0 : c0+len]^T for the rows of one
// source S (W, of type DT, rows jb = 0 .. out; or A, float32, rows jb = out
// .. out + r of V), vectors when vec. Rows i >= n and j >= jend are clamped
// to the last row; their sums are discarded by the caller.
template <int NB, int DT, int XT>
__device__ __forceinline__ void lora_small_rows(const typename lora_elem<XT>::type* __restrict__ x,
                                                const typename lora_elem<DT>::type* __restrict__ S,
                                                int n, int in, int jb, int jend, int j0, int c0,
                                                int len, bool vec, int lane,
                                                float (&acc)[NB][LORA_SMALL_R]) {
  // (x in 16 bits at NB = 16: 1, the registers of 16 rows of x pointers
  // and accumulators leave no room for more.)
  constexpr int U = NB <= 2 ? 4 : (XT != LORA_F32 && NB >= 16 ? 1 : 2);
  typedef typename lora_elem<DT>::type elem;
  const typename lora_elem<XT>::type* xr[NB];
  const elem* wr[LORA_SMALL_R];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) xr[i] = x + static_cast<long long>(lora_min(i, n - 1)) * in + c0;
  LORA_UNROLL
  for (int q = 0; q < LORA_SMALL_R; ++q)
    wr[q] = S + static_cast<long long>(lora_min(j0 + q, jend - 1) - jb) * in + c0;
  if (vec) {
    typedef lora_small_unit<DT, true> L;
    lora_small_segment<NB, U, L, XT>(xr, wr, len / L::E, lane, acc);
  } else {
    lora_small_segment<NB, U, lora_small_unit<DT, false>, XT>(xr, wr, len, lane, acc);
  }
}

// The whole warp's work for NB >= n rows of x over rows j0 .. j0+3 of one
// source (see lora_small_rows); part is this warp's slice of shared memory,
// p this split's slice of P, whose rows are `rows` = out + r long.
template <int NB, int DT, int XT>
__device__ __forceinline__ void lora_small_warp(const typename lora_elem<XT>::type* __restrict__ x,
                                                const typename lora_elem<DT>::type* __restrict__ S,
                                                float* __restrict__ p, int n, int in, int rows,
                                                int jb, int jend, int j0, int c0, int len, bool vec,
                                                int lane, float (*part)[LORA_WARP_SIZE + 1]) {
  float acc[NB][LORA_SMALL_R];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < LORA_SMALL_R; ++q) acc[i][q] = 0.0f;
  }

  lora_small_rows<NB, DT, XT>(x, S, n, in, jb, jend, j0, c0, len, vec, lane, acc);

  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < LORA_SMALL_R; ++q) part[i * LORA_SMALL_R + q][lane] = acc[i][q];
  }
  __syncwarp();

  for (int v = lane; v < NB * LORA_SMALL_R; v += LORA_WARP_SIZE) {
    const int i = v / LORA_SMALL_R;
    const int j = j0 + v % LORA_SMALL_R;
    if (i < n && j < jend) {
      float sum = 0.0f;
      LORA_UNROLL
      for (int l = 0; l < LORA_WARP_SIZE; ++l) sum += part[v][l];
      p[static_cast<long long>(i) * rows + j] = sum;
    }
  }
}

// One source's rows for every n: NB the next power of two >= n.
template <int DT, int XT>
__device__ __forceinline__ void lora_small_source(const typename lora_elem<XT>::type* __restrict__ x,
                                                  const typename lora_elem<DT>::type* __restrict__ S,
                                                  float* __restrict__ p, int n, int in, int rows,
                                                  int jb, int jend, int j0, int c0, int len,
                                                  bool vec, int lane,
                                                  float (*pw)[LORA_WARP_SIZE + 1]) {
  if (n == 1)
    lora_small_warp<1, DT, XT>(x, S, p, n, in, rows, jb, jend, j0, c0, len, vec, lane, pw);
  else if (n <= 2)
    lora_small_warp<2, DT, XT>(x, S, p, n, in, rows, jb, jend, j0, c0, len, vec, lane, pw);
  else if (n <= 4)
    lora_small_warp<4, DT, XT>(x, S, p, n, in, rows, jb, jend, j0, c0, len, vec, lane, pw);
  else if (n <= 8)
    lora_small_warp<8, DT, XT>(x, S, p, n, in, rows, jb, jend, j0, c0, len, vec, lane, pw);
  else
    lora_small_warp<16, DT, XT>(x, S, p, n, in, rows, jb, jend, j0, c0, len, vec, lane, pw);
}

// The kernel for W of type DT and x of type XT: blocks bx < ceil(out /
// LORA_SMALL_ROWS_PER_BLOCK) take rows of W, the others rows of A, so that
// a warp's rows are all of one type.
template <int DT, int XT>
__device__ __forceinline__ void lora_forward_small_impl(const typename lora_elem<XT>::type* __restrict__ x,
                                                        const typename lora_elem<DT>::type* __restrict__ W,
                                                        const float* __restrict__ A,
                                                        float* __restrict__ P, int n, int in,
                                                        int out, int r) {
  __shared__ float part[LORA_SMALL_WARPS][LORA_SMALL_N_MAX * LORA_SMALL_R][LORA_WARP_SIZE + 1];

  if (blockDim.x != LORA_SMALL_THREADS) return;  // the tiling needs this exact block
  if (n < 1 || n > LORA_SMALL_N_MAX) return;
  const int rows = out + r;
  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int wblocks = (out + LORA_SMALL_ROWS_PER_BLOCK - 1) / LORA_SMALL_ROWS_PER_BLOCK;
  const bool onA = static_cast<int>(blockIdx.x) >= wblocks;
  const int jb = onA ? out : 0;
  const int jend = onA ? rows : out;
  const int j0 = jb + (static_cast<int>(blockIdx.x) - (onA ? wblocks : 0)) * LORA_SMALL_ROWS_PER_BLOCK +
                 warp * LORA_SMALL_R;
  if (j0 >= jend) return;  // the whole warp leaves together

  // This block's split of the inner dimension; an empty one writes zeros.
  const int per = (in + static_cast<int>(gridDim.y) - 1) / static_cast<int>(gridDim.y);
  const int chunk = (per + LORA_SMALL_SPLIT_ALIGN - 1) / LORA_SMALL_SPLIT_ALIGN * LORA_SMALL_SPLIT_ALIGN;
  const long long c0l = static_cast<long long>(blockIdx.y) * chunk;
  const int c0 = c0l < in ? static_cast<int>(c0l) : in;
  const int len = lora_min(chunk, in - c0);
  float* p = P + static_cast<long long>(blockIdx.y) * n * rows;

  float(*pw)[LORA_WARP_SIZE + 1] = part[warp];
  if (onA) {
    const bool vec = (in & 3) == 0 && lora_aligned16(x) && lora_aligned16(A);
    lora_small_source<LORA_F32, XT>(x, A, p, n, in, rows, jb, jend, j0, c0, len, vec, lane, pw);
  } else {
    const bool vec = (in & (DT == LORA_F32 ? 3 : 7)) == 0 && lora_aligned16(x) && lora_aligned16(W);
    lora_small_source<DT, XT>(x, W, p, n, in, rows, jb, jend, j0, c0, len, vec, lane, pw);
  }
}

extern "C" __global__ void __launch_bounds__(LORA_SMALL_THREADS, 2)
    lora_forward_small(const float* __restrict__ x, const float* __restrict__ W,
                       const float* __restrict__ A, float* __restrict__ P, int n, int in,
                       int out, int r) {
  lora_forward_small_impl<LORA_F32, LORA_F32>(x, W, A, P, n, in, out, r);
}

extern "C" __global__ void __launch_bounds__(LORA_SMALL_THREADS, 2)
    lora_forward_small_f16(const float* __restrict__ x, const __half* __restrict__ W,
                           const float* __restrict__ A, float* __restrict__ P, int n, int in,
                           int out, int r) {
  lora_forward_small_impl<LORA_F16, LORA_F32>(x, lora_bits(W), A, P, n, in, out, r);
}

extern "C" __global__ void __launch_bounds__(LORA_SMALL_THREADS, 2)
    lora_forward_small_bf16(const float* __restrict__ x, const __nv_bfloat16* __restrict__ W,
                            const float* __restrict__ A, float* __restrict__ P, int n, int in,
                            int out, int r) {
  lora_forward_small_impl<LORA_BF16, LORA_F32>(x, lora_bits(W), A, P, n, in, out, r);
}

// x in W's 16-bit type, read as it is: four elements in one 8-byte load.
extern "C" __global__ void __launch_bounds__(LORA_SMALL_THREADS, 2)
    lora_forward_small_f16_xf16(const __half* __restrict__ x, const __half* __restrict__ W,
                                const float* __restrict__ A, float* __restrict__ P, int n, int in,
                                int out, int r) {
  lora_forward_small_impl<LORA_F16, LORA_F16>(lora_bits(x), lora_bits(W), A, P, n, in, out, r);
}

extern "C" __global__ void __launch_bounds__(LORA_SMALL_THREADS, 2)
    lora_forward_small_bf16_xbf16(const __nv_bfloat16* __restrict__ x,
                                  const __nv_bfloat16* __restrict__ W, const float* __restrict__ A,
                                  float* __restrict__ P, int n, int in, int out, int r) {
  lora_forward_small_impl<LORA_BF16, LORA_BF16>(lora_bits(x), lora_bits(W), A, P, n, in, out, r);
}

#undef LORA_SMALL_R

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_forward_small)
LORA_EMU_REGISTER(lora_forward_small_f16)
LORA_EMU_REGISTER(lora_forward_small_bf16)
LORA_EMU_REGISTER(lora_forward_small_f16_xf16)
LORA_EMU_REGISTER(lora_forward_small_bf16_xbf16)
#endif
