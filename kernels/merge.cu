// merge.cu: W += c * B * A in place (c = +s merges the adapter, c = -s unmerges),
// and lora_merge_check, which tells whether that update would write a NaN or
// ±Inf into W without writing anything.
//
// For each element, delta[i,j] = sum_k (c*B[i,k]) * A[k,j] is accumulated
// with fmaf from zero in ascending k, independently of W and of the launch
// geometry, and then W[i,j] = W[i,j] + delta[i,j] is one final rounding.
// c*B[i,k] is rounded once before use, so negating c negates every product,
// every partial sum and delta exactly: unmerge subtracts bit-for-bit the delta
// that merge added, and merge followed by unmerge restores W to within the
// rounding of the two final additions.
//
// Block (bx, by) updates the LORA_MERGE_TILE_OUT x LORA_MERGE_TILE_IN tile of W
// at rows i0 = by*LORA_MERGE_TILE_OUT, columns j0 = bx*LORA_MERGE_TILE_IN.
// Thread t = (ty, tx) = (t/32, t%32) owns columns j0 + tx*4 .. +3 of rows
// i0 + ty + 8q, q = 0..3: a 4x4 register tile. The rank is staged through
// shared memory LORA_MERGE_R_CHUNK at a time: the chunk's rows of A over the
// tile's columns, and c times the tile's rows of B over the chunk.
//
// lora_merge_check runs the very same code and replaces each store to W by a
// test of the value stored, so it decides exactly what lora_merge would write.
//
// Each thread loads its elements of W before staging the rank, so that the
// block's 32 x 128 tile of W (16 KB) is in flight during the staging and the
// products; rows past `out` and columns past `in` read a clamped, valid
// element that is never stored.
//
// lora_merge_f16, lora_merge_bf16 and their _check forms take a binary16 or
// bfloat16 W as its 16-bit patterns: the same tile, with thread (ty, tx) =
// (t/16, t%16) owning columns j0 + tx*8 .. +7 of rows i0 + ty + 16q, q = 0..1
// (one 16-byte load of eight elements per row, widened in registers), the
// same delta, the sum w + delta formed in float32 and rounded once to W's
// format (nearest even), stored eight at a time in 16 bytes; the check flags
// a sum that rounds to ±Inf there (65520 and above in binary16). Rows whose
// 16 bytes at j are not aligned (in % 8 != 0) or pass the row's end take
// scalar loads and stores.
//
// Global memory: reads and writes each element of W exactly once (float4 when
// in % 4 == 0 and W is 16-byte aligned; 16 bytes of eight 16-bit elements
// where aligned); reads A (r x in) and B (out x r) per tile. Shared memory:
// LORA_MERGE_R_CHUNK*LORA_MERGE_TILE_IN + LORA_MERGE_TILE_OUT*(LORA_MERGE_R_CHUNK+1)
// floats (static).
#include "common.cuh"

// ---- 16-bit elements of W -------------------------------------------------
//
// A half-precision W is passed as its 16-bit patterns; kDT names their format
// (LORA_F16, LORA_BF16 of common.cuh, whose lora_widen and lora_round convert
// them: exactly, and to nearest even).

// lora_nonfinite16 is 1 when the pattern h is ±Inf or NaN, else 0.
template <int kDT>
__device__ __forceinline__ unsigned lora_nonfinite16(unsigned h) {
  const unsigned e = kDT == LORA_BF16 ? 0x7f80u : 0x7c00u;
  return (h & e) == e;
}

// ---- lora_merge and lora_merge_check ---------------------------------------

// The thread geometry of the tile for W's element type: one 16-byte load of
// kCols consecutive elements of a row per thread and row (4 float32 or 8
// 16-bit elements), kTx threads across the tile's LORA_MERGE_TILE_IN columns,
// kTy across its rows, kRpt rows per thread.
template <int kDT>
struct lora_merge_geom {
  static constexpr int kCols = kDT == LORA_F32 ? 4 : 8;
  static constexpr int kTx = LORA_MERGE_TILE_IN / kCols;
  static constexpr int kTy = LORA_MERGE_THREADS / kTx;
  static constexpr int kRpt = LORA_MERGE_TILE_OUT / kTy;
  static_assert(kTx * kTy == LORA_MERGE_THREADS && kRpt * kTy == LORA_MERGE_TILE_OUT,
                "a strip of kCols columns of kRpt rows per thread");
};

static_assert((LORA_MERGE_R_CHUNK * LORA_MERGE_TILE_IN) % LORA_MERGE_THREADS == 0 &&
                  (LORA_MERGE_TILE_OUT * LORA_MERGE_R_CHUNK) % LORA_MERGE_THREADS == 0,
              "staging loads divide evenly among the threads");

// lora_merge_tile is the body of every entry point. kDT: W's element type (T
// float for LORA_F32, unsigned short, the patterns, otherwise). kCheck ==
// false: lora_merge, which writes W. kCheck == true: lora_merge_check, which
// computes every value lora_merge would write, by the same instructions in
// the same order, writes none, and sets *flag = 1 when one of them is NaN or
// ±Inf in W's element type (its exponent bits all ones). flag is unused when
// kCheck is false.
//
// A 16-bit element is widened exactly, w + delta is formed in float32 as for
// float32 (the same fmaf chain from zero, the same __fadd_rn), and that sum
// is rounded once to W's format. So the result is bit for bit the float32
// kernel's on a widened copy of W, rounded.
template <int kDT, bool kCheck, typename T>
__device__ __forceinline__ void lora_merge_tile(T* __restrict__ W, const float* __restrict__ A,
                                                const float* __restrict__ B, int out, int in, int r,
                                                float c, int* __restrict__ flag) {
  typedef lora_merge_geom<kDT> G;
  __shared__ __align__(16) float sa[LORA_MERGE_R_CHUNK][LORA_MERGE_TILE_IN];
  __shared__ float sb[LORA_MERGE_TILE_OUT][LORA_MERGE_R_CHUNK + 1];
  if (blockDim.x != LORA_MERGE_THREADS) return;  // the tiling needs this exact block

  const int t = threadIdx.x;
  const int tx = t % G::kTx;
  const int ty = t / G::kTx;
  const int i0 = blockIdx.y * LORA_MERGE_TILE_OUT;
  const int j0 = blockIdx.x * LORA_MERGE_TILE_IN;

  // This thread's elements of W, loaded first: their kRpt 16-byte loads
  // (16 KB per block in float32, 8 KB in 16 bits) are in flight while the
  // rank is staged and multiplied, instead of one row at a time behind the
  // barriers. A 16-bit row takes the vector load wherever its 16 bytes are
  // aligned and inside the row (so every row when in % 8 == 0), scalars
  // elsewhere.
  const bool vec = kDT == LORA_F32 ? (in & 3) == 0 && lora_aligned16(W) : true;
  const int j = j0 + tx * G::kCols;
  float wv[G::kRpt][G::kCols];
  LORA_UNROLL
  for (int q = 0; q < G::kRpt; ++q) {
    const int i = i0 + ty + q * G::kTy;
    const T* wr = W + static_cast<long long>(lora_min(i, out - 1)) * in;
    if (vec && j + G::kCols - 1 < in && lora_aligned16(wr + j)) {
      if constexpr (kDT == LORA_F32) {
        const float4 w = *reinterpret_cast<const float4*>(wr + j);
        wv[q][0] = w.x;
        wv[q][1] = w.y;
        wv[q][2] = w.z;
        wv[q][3] = w.w;
      } else {
        const uint4 w = *reinterpret_cast<const uint4*>(wr + j);
        const unsigned u[4] = {w.x, w.y, w.z, w.w};
        LORA_UNROLL
        for (int e = 0; e < 4; ++e) {
          wv[q][2 * e] = lora_lo<kDT>(u[e]);
          wv[q][2 * e + 1] = lora_hi<kDT>(u[e]);
        }
      }
    } else {
      LORA_UNROLL
      for (int e = 0; e < G::kCols; ++e) {
        if constexpr (kDT == LORA_F32)
          wv[q][e] = wr[lora_min(j + e, in - 1)];
        else
          wv[q][e] = lora_widen<kDT>(wr[lora_min(j + e, in - 1)]);
      }
    }
  }

  float d[G::kRpt][G::kCols];
  LORA_UNROLL
  for (int q = 0; q < G::kRpt; ++q) {
    LORA_UNROLL
    for (int e = 0; e < G::kCols; ++e) d[q][e] = 0.0f;
  }

  for (int k0 = 0; k0 < r; k0 += LORA_MERGE_R_CHUNK) {
    const int kc = lora_min(LORA_MERGE_R_CHUNK, r - k0);

    LORA_UNROLL
    for (int p = 0; p < LORA_MERGE_R_CHUNK * LORA_MERGE_TILE_IN / LORA_MERGE_THREADS; ++p) {
      const int idx = t + p * LORA_MERGE_THREADS;
      const int kk = idx / LORA_MERGE_TILE_IN;
      const int jj = idx % LORA_MERGE_TILE_IN;
      const int j = j0 + jj;
      sa[kk][jj] = (kk < kc && j < in) ? __ldg(A + static_cast<long long>(k0 + kk) * in + j) : 0.0f;
    }
    LORA_UNROLL
    for (int p = 0; p < LORA_MERGE_TILE_OUT * LORA_MERGE_R_CHUNK / LORA_MERGE_THREADS; ++p) {
      const int idx = t + p * LORA_MERGE_THREADS;
      const int ii = idx / LORA_MERGE_R_CHUNK;
      const int kk = idx % LORA_MERGE_R_CHUNK;
      const int i = i0 + ii;
      sb[ii][kk] = (kk < kc && i < out)
                       ? __fmul_rn(c, __ldg(B + static_cast<long long>(i) * r + k0 + kk))
                       : 0.0f;
    }
    __syncthreads();

    for (int kk = 0; kk < kc; ++kk) {
      float a[G::kCols];
      LORA_UNROLL
      for (int h = 0; h < G::kCols / 4; ++h) {
        const float4 v = *reinterpret_cast<const float4*>(&sa[kk][tx * G::kCols + 4 * h]);
        a[4 * h] = v.x;
        a[4 * h + 1] = v.y;
        a[4 * h + 2] = v.z;
        a[4 * h + 3] = v.w;
      }
      LORA_UNROLL
      for (int q = 0; q < G::kRpt; ++q) {
        const float b = sb[ty + q * G::kTy][kk];
        LORA_UNROLL
        for (int e = 0; e < G::kCols; ++e) d[q][e] = fmaf(b, a[e], d[q][e]);
      }
    }
    __syncthreads();
  }

  unsigned bad = 0;
  LORA_UNROLL
  for (int q = 0; q < G::kRpt; ++q) {
    const int i = i0 + ty + q * G::kTy;
    if (i >= out) continue;
    T* wr = W + static_cast<long long>(i) * in;
    if constexpr (kDT == LORA_F32) {
      if (vec && j + 3 < in) {
        float4 w;
        w.x = __fadd_rn(wv[q][0], d[q][0]);
        w.y = __fadd_rn(wv[q][1], d[q][1]);
        w.z = __fadd_rn(wv[q][2], d[q][2]);
        w.w = __fadd_rn(wv[q][3], d[q][3]);
        if (kCheck)
          bad |= lora_nonfinite(w.x) | lora_nonfinite(w.y) | lora_nonfinite(w.z) | lora_nonfinite(w.w);
        else
          *reinterpret_cast<float4*>(wr + j) = w;
      } else {
        LORA_UNROLL
        for (int e = 0; e < 4; ++e)
          if (j + e < in) {
            const float v = __fadd_rn(wv[q][e], d[q][e]);
            if (kCheck)
              bad |= lora_nonfinite(v);
            else
              wr[j + e] = v;
          }
      }
    } else {
      unsigned h[8];
      LORA_UNROLL
      for (int e = 0; e < 8; ++e) h[e] = lora_round<kDT>(__fadd_rn(wv[q][e], d[q][e]));
      if (j + 7 < in && lora_aligned16(wr + j)) {
        if (kCheck) {
          LORA_UNROLL
          for (int e = 0; e < 8; ++e) bad |= lora_nonfinite16<kDT>(h[e]);
        } else {
          *reinterpret_cast<uint4*>(wr + j) =
              make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
        }
      } else {
        LORA_UNROLL
        for (int e = 0; e < 8; ++e)
          if (j + e < in) {
            if (kCheck)
              bad |= lora_nonfinite16<kDT>(h[e]);
            else
              wr[j + e] = static_cast<unsigned short>(h[e]);
          }
      }
    }
  }
  if (kCheck && bad) *flag = 1;  // every writer writes 1: the race is benign
}

extern "C" __global__ void __launch_bounds__(LORA_MERGE_THREADS)
    lora_merge(float* __restrict__ W, const float* __restrict__ A, const float* __restrict__ B,
               int out, int in, int r, float c) {
  lora_merge_tile<LORA_F32, false>(W, A, B, out, in, r, c, nullptr);
}

// W is only read: the const is cast away for the shared body, whose kCheck
// path never stores to it.
extern "C" __global__ void __launch_bounds__(LORA_MERGE_THREADS)
    lora_merge_check(const float* __restrict__ W, const float* __restrict__ A,
                     const float* __restrict__ B, int out, int in, int r, float c,
                     int* __restrict__ flag) {
  lora_merge_tile<LORA_F32, true>(const_cast<float*>(W), A, B, out, in, r, c, flag);
}

// The same for a binary16 or bfloat16 W (its 16-bit patterns).
extern "C" __global__ void __launch_bounds__(LORA_MERGE_THREADS)
    lora_merge_f16(__half* __restrict__ W, const float* __restrict__ A,
                   const float* __restrict__ B, int out, int in, int r, float c) {
  lora_merge_tile<LORA_F16, false>(lora_bits(W), A, B, out, in, r, c, nullptr);
}

extern "C" __global__ void __launch_bounds__(LORA_MERGE_THREADS)
    lora_merge_bf16(__nv_bfloat16* __restrict__ W, const float* __restrict__ A,
                    const float* __restrict__ B, int out, int in, int r, float c) {
  lora_merge_tile<LORA_BF16, false>(lora_bits(W), A, B, out, in, r, c, nullptr);
}

extern "C" __global__ void __launch_bounds__(LORA_MERGE_THREADS)
    lora_merge_check_f16(const __half* __restrict__ W, const float* __restrict__ A,
                         const float* __restrict__ B, int out, int in, int r, float c,
                         int* __restrict__ flag) {
  lora_merge_tile<LORA_F16, true>(const_cast<unsigned short*>(lora_bits(W)), A, B, out, in, r, c, flag);
}

extern "C" __global__ void __launch_bounds__(LORA_MERGE_THREADS)
    lora_merge_check_bf16(const __nv_bfloat16* __restrict__ W, const float* __restrict__ A,
                          const float* __restrict__ B, int out, int in, int r, float c,
                          int* __restrict__ flag) {
  lora_merge_tile<LORA_BF16, true>(const_cast<unsigned short*>(lora_bits(W)), A, B, out, in, r, c,
                                   flag);
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_merge)
LORA_EMU_REGISTER(lora_merge_check)
LORA_EMU_REGISTER(lora_merge_f16)
LORA_EMU_REGISTER(lora_merge_bf16)
LORA_EMU_REGISTER(lora_merge_check_f16)
LORA_EMU_REGISTER(lora_merge_check_bf16)
#endif
