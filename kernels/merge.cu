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
// Global memory: reads and writes each element of W exactly once (float4 when
// in % 4 == 0 and W is 16-byte aligned); reads A (r x in) and B (out x r) per
// tile. Shared memory: LORA_MERGE_R_CHUNK*LORA_MERGE_TILE_IN +
// LORA_MERGE_TILE_OUT*(LORA_MERGE_R_CHUNK+1) floats (static).
#include "common.cuh"

#define LORA_MERGE_TX (LORA_MERGE_TILE_IN / 4)
#define LORA_MERGE_TY (LORA_MERGE_THREADS / LORA_MERGE_TX)
#define LORA_MERGE_RPT (LORA_MERGE_TILE_OUT / LORA_MERGE_TY)

static_assert(LORA_MERGE_TX * LORA_MERGE_TY == LORA_MERGE_THREADS &&
                  LORA_MERGE_RPT * LORA_MERGE_TY == LORA_MERGE_TILE_OUT,
              "a 4-column strip of LORA_MERGE_RPT rows per thread");
static_assert((LORA_MERGE_R_CHUNK * LORA_MERGE_TILE_IN) % LORA_MERGE_THREADS == 0 &&
                  (LORA_MERGE_TILE_OUT * LORA_MERGE_R_CHUNK) % LORA_MERGE_THREADS == 0,
              "staging loads divide evenly among the threads");

// lora_merge_tile is the body of both entry points. kCheck == false:
// lora_merge, which writes W. kCheck == true: lora_merge_check, which
// computes every value lora_merge would write, by the same instructions in
// the same order, writes none, and sets *flag = 1 when one of them is NaN or
// ±Inf (its exponent bits all ones). flag is unused when kCheck is false.
template <bool kCheck>
__device__ __forceinline__ void lora_merge_tile(float* __restrict__ W, const float* __restrict__ A,
                                                const float* __restrict__ B, int out, int in, int r,
                                                float c, int* __restrict__ flag) {
  __shared__ __align__(16) float sa[LORA_MERGE_R_CHUNK][LORA_MERGE_TILE_IN];
  __shared__ float sb[LORA_MERGE_TILE_OUT][LORA_MERGE_R_CHUNK + 1];
  if (blockDim.x != LORA_MERGE_THREADS) return;  // the tiling needs this exact block

  const int t = threadIdx.x;
  const int tx = t % LORA_MERGE_TX;
  const int ty = t / LORA_MERGE_TX;
  const int i0 = blockIdx.y * LORA_MERGE_TILE_OUT;
  const int j0 = blockIdx.x * LORA_MERGE_TILE_IN;

  // This thread's elements of W, loaded first: their LORA_MERGE_RPT float4
  // loads (16 KB per block) are in flight while the rank is staged and
  // multiplied, instead of one row at a time behind the barriers.
  const bool vec = (in & 3) == 0 && lora_aligned16(W);
  const int j = j0 + tx * 4;
  float wv[LORA_MERGE_RPT][4];
  LORA_UNROLL
  for (int q = 0; q < LORA_MERGE_RPT; ++q) {
    const int i = i0 + ty + q * LORA_MERGE_TY;
    const float* wr = W + static_cast<long long>(lora_min(i, out - 1)) * in;
    if (vec && j + 3 < in) {
      const float4 w = *reinterpret_cast<const float4*>(wr + j);
      wv[q][0] = w.x;
      wv[q][1] = w.y;
      wv[q][2] = w.z;
      wv[q][3] = w.w;
    } else {
      LORA_UNROLL
      for (int e = 0; e < 4; ++e) wv[q][e] = wr[lora_min(j + e, in - 1)];
    }
  }

  float d[LORA_MERGE_RPT][4];
  LORA_UNROLL
  for (int q = 0; q < LORA_MERGE_RPT; ++q) {
    LORA_UNROLL
    for (int e = 0; e < 4; ++e) d[q][e] = 0.0f;
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
      const float4 a = *reinterpret_cast<const float4*>(&sa[kk][tx * 4]);
      LORA_UNROLL
      for (int q = 0; q < LORA_MERGE_RPT; ++q) {
        const float b = sb[ty + q * LORA_MERGE_TY][kk];
        d[q][0] = fmaf(b, a.x, d[q][0]);
        d[q][1] = fmaf(b, a.y, d[q][1]);
        d[q][2] = fmaf(b, a.z, d[q][2]);
        d[q][3] = fmaf(b, a.w, d[q][3]);
      }
    }
    __syncthreads();
  }

  unsigned bad = 0;
  LORA_UNROLL
  for (int q = 0; q < LORA_MERGE_RPT; ++q) {
    const int i = i0 + ty + q * LORA_MERGE_TY;
    if (i >= out) continue;
    float* wr = W + static_cast<long long>(i) * in;
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
  }
  if (kCheck && bad) *flag = 1;  // every writer writes 1: the race is benign
}

extern "C" __global__ void __launch_bounds__(LORA_MERGE_THREADS)
    lora_merge(float* __restrict__ W, const float* __restrict__ A, const float* __restrict__ B,
               int out, int in, int r, float c) {
  lora_merge_tile<false>(W, A, B, out, in, r, c, nullptr);
}

// W is only read: the const is cast away for the shared body, whose kCheck
// path never stores to it.
extern "C" __global__ void __launch_bounds__(LORA_MERGE_THREADS)
    lora_merge_check(const float* __restrict__ W, const float* __restrict__ A,
                     const float* __restrict__ B, int out, int in, int r, float c,
                     int* __restrict__ flag) {
  lora_merge_tile<true>(const_cast<float*>(W), A, B, out, in, r, c, flag);
}

#undef LORA_MERGE_TX
#undef LORA_MERGE_TY
#undef LORA_MERGE_RPT

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_merge)
LORA_EMU_REGISTER(lora_merge_check)
#endif
