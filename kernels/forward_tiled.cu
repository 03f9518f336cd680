// forward_tiled.cu: y = x * W^T + T * B^T for any batch size n.
//
// y[i,j] = sum_c x[i,c] * W[j,c] + sum_k T[i,k] * B[j,k], fp32 accumulation:
// one SGEMM over the concatenated inner dimension, [x | T] . [W | B]^T, both
// operands contiguous along the inner dimension ("NT"). The main loop walks
// the K-tiles of x/W, then those of T/B (the last tile of each segment is
// zero-filled past its end); r == 0 (T and B may be null) is x * W^T alone.
//
// Block (bx, by) computes the LORA_TILE_M x LORA_TILE_N tile of y at rows
// m0 = bx*LORA_TILE_M, columns n0 = by*LORA_TILE_N. Per K-step of LORA_TILE_K,
// thread t loads 4 consecutive inner elements of row m0 + t/2 of x (or T) and
// of row n0 + t/2 of W (or B) -- one float4 when the segment length is a
// multiple of 4 and the pointers are 16-byte aligned -- and stores them
// transposed, K-major, in shared memory. Shared memory is double-buffered: the
// next tile is fetched into registers while the current one is multiplied, so
// there is one barrier per K-step. Thread (ty, tx) = (t/16, t%16) accumulates
// an 8 x 8 register tile: rows m0 + {ty*4 .. ty*4+3, 64+ty*4 .. 64+ty*4+3},
// columns n0 + {tx*4 .. tx*4+3, 64+tx*4 .. 64+tx*4+3}. Edge tiles are
// guarded: out-of-range rows load zeros and are not stored.
//
// lora_forward_tiled_nf4: the same with an NF4 W (DT = LORA_NF4), its absmax
// and block size after its codes: a K-step of row n0 + t of W is a run of
// eight codes (lora_fetch8_nf4; see nf4.cu), dequantized into shared memory
// as a 16-bit W's vector is widened.
//
// Global memory: reads x, T (n x .) and W, B (out x .) tile by tile; writes
// each element of y (n x out) exactly once, never reads it. Shared memory:
// 2*LORA_TILE_K*(LORA_TILE_M+4) + 2*LORA_TILE_K*(LORA_TILE_N+4) floats (static).
#include "tile.cuh"

static_assert(LORA_TILE_K == 8 && LORA_TILE_N <= LORA_TILE_THREADS,
              "a K-step of a 16-bit W row is one 16-byte vector, one per thread of the first LORA_TILE_N");

// W of type DT. A 16-bit W's K-step is loaded by threads t < LORA_TILE_N,
// row n0 + t, one 16-byte vector of LORA_TILE_K elements, kept as bits until
// it is widened into shared memory.
template <int DT>
__device__ __forceinline__ void lora_forward_tiled_impl(const float* __restrict__ x,
                                                        const typename lora_elem<DT>::type* __restrict__ W,
                                                        const float* __restrict__ T,
                                                        const float* __restrict__ B,
                                                        float* __restrict__ y, int n, int in, int out,
                                                        int r, const float* __restrict__ absmax = nullptr,
                                                        int block = 0) {
  constexpr bool kNF4 = DT == LORA_NF4;
  constexpr bool kHalf = DT != LORA_F32;  // W's K-step is a run of 8 elements
  __shared__ __align__(16) lora_tile_a sa[2];
  __shared__ __align__(16) lora_tile_b sb[2];
  if (blockDim.x != LORA_TILE_THREADS) return;  // the tiling needs this exact block
  int sh = 0;
  const float* tab = nullptr;  // an NF4 W: the table, in shared memory
  if constexpr (kNF4) {
    __shared__ float nf4_tab[16];
    sh = lora_nf4_log2(block);
    if (sh < 3) return;  // not a power of two of at least 8: nothing written
    lora_nf4_fill(nf4_tab);
    __syncthreads();
    tab = nf4_tab;
  }

  const int t = threadIdx.x;
  const int m0 = blockIdx.x * LORA_TILE_M;
  const int n0 = blockIdx.y * LORA_TILE_N;

  // Loading: row t/2 of each operand tile, inner elements (t%2)*4 .. +3.
  const int lrow = t >> 1;
  const int lk = (t & 1) * 4;
  const int arow = m0 + lrow;
  const int brow = n0 + lrow;
  const bool a_ok = arow < n;
  const bool b_ok = brow < out;

  // Computing: the 8x8 register tile of thread (ty, tx).
  const int tx = t % (LORA_TILE_N / LORA_TILE_TN);
  const int ty = t / (LORA_TILE_N / LORA_TILE_TN);

  const int tiles_x = (in + LORA_TILE_K - 1) / LORA_TILE_K;
  const int tiles = tiles_x + (r > 0 ? (r + LORA_TILE_K - 1) / LORA_TILE_K : 0);
  const bool vec_x = (in & 3) == 0 && lora_aligned16(x) && (kHalf || lora_aligned16(W));
  // A 16-bit W: 16-byte vectors; an NF4 W: 32-bit words of codes.
  const bool vec_w = (in & 7) == 0 && (kNF4 ? (reinterpret_cast<uintptr_t>(W) & 3u) == 0 : lora_aligned16(W));
  (void)vec_w;
  (void)sh;
  (void)tab;
  const bool vec_t = r > 0 && (r & 3) == 0 && lora_aligned16(T) && lora_aligned16(B);

  float ra[4], rb[4];
  uint4 rh = make_uint4(0u, 0u, 0u, 0u);
  bool hseg = false;  // the fetched tile of W is a 16-bit one, in rh
  (void)rh;
  (void)hseg;
  float acc[8][8];
  lora_tile_zero(acc);

  // Tile kt: K-tile kt of x/W when kt < tiles_x, else K-tile kt-tiles_x of T/B.
  auto fetch = [&](int kt) {
    if (kt < tiles_x) {
      const int k_ = kt * LORA_TILE_K + lk;
      lora_tile_fetch(x, in, arow, a_ok, k_, in, vec_x, ra);
      if constexpr (kHalf) {
        hseg = true;
        if constexpr (kNF4) {
          if (t < LORA_TILE_N)
            rh = lora_fetch8_nf4(W, absmax, sh, static_cast<long long>(n0 + t) * in + kt * LORA_TILE_K,
                                 n0 + t < out, in - kt * LORA_TILE_K, vec_w);
        } else if (t < LORA_TILE_N) {
          rh = lora_fetch8_bits(W, in, n0 + t, n0 + t < out, kt * LORA_TILE_K, in, vec_w);
        }
      } else {
        lora_tile_fetch(reinterpret_cast<const float*>(W), in, brow, b_ok, k_, in, vec_x, rb);
      }
    } else {
      hseg = false;
      const int k_ = (kt - tiles_x) * LORA_TILE_K + lk;
      lora_tile_fetch(T, r, arow, a_ok, k_, r, vec_t, ra);
      lora_tile_fetch(B, r, brow, b_ok, k_, r, vec_t, rb);
    }
  };
  auto store = [&](int buf, int) {
    LORA_UNROLL
    for (int e = 0; e < 4; ++e) sa[buf][lk + e][lrow] = ra[e];
    if (kHalf && hseg) {
      if (t < LORA_TILE_N) {
        float v[8];
        if constexpr (kNF4)
          lora_unpack8_nf4(rh, tab, v);
        else
          lora_unpack8<DT>(rh, v);
        LORA_UNROLL
        for (int e = 0; e < 8; ++e) sb[buf][e][t] = v[e];
      }
    } else {
      LORA_UNROLL
      for (int e = 0; e < 4; ++e) sb[buf][lk + e][lrow] = rb[e];
    }
  };

  lora_tile_loop(tiles, fetch, store, sa, sb, ty, tx, acc);

  lora_tile_store(y, n, out, m0, n0, ty, tx, acc);
}

LORA_TILE_KERNEL(lora_forward_tiled, lora_forward_tiled_impl<LORA_F32>, float)
LORA_TILE_KERNEL(lora_forward_tiled_f16, lora_forward_tiled_impl<LORA_F16>, __half)
LORA_TILE_KERNEL(lora_forward_tiled_bf16, lora_forward_tiled_impl<LORA_BF16>, __nv_bfloat16)

// An NF4 W: its codes, its absmax and its block size (see nf4.cu).
extern "C" __global__ void __launch_bounds__(LORA_TILE_THREADS, 2)
    lora_forward_tiled_nf4(const float* __restrict__ x, const unsigned char* __restrict__ W,
                           const float* __restrict__ absmax, const float* __restrict__ T,
                           const float* __restrict__ B, float* __restrict__ y, int n, int in,
                           int out, int r, int block) {
  lora_forward_tiled_impl<LORA_NF4>(x, W, T, B, y, n, in, out, r, absmax, block);
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_forward_tiled_nf4)
LORA_EMU_REGISTER(lora_forward_tiled)
LORA_EMU_REGISTER(lora_forward_tiled_f16)
LORA_EMU_REGISTER(lora_forward_tiled_bf16)
#endif
