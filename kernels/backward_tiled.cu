// backward_tiled.cu: dx = dy * W + U * A for any batch size n.
//
// dx[i,c] = sum_j dy[i,j] * W[j,c] + sum_k U[i,k] * A[k,c], fp32 accumulation:
// one SGEMM over the concatenated inner dimension, [dy | U] . [W ; A], the
// left operand contiguous along the inner dimension and the right one along
// the output's columns ("NN"). The main loop walks the K-tiles of dy/W, then
// those of U/A (the last tile of each segment is zero-filled past its end);
// r == 0 (U and A may be null) is dy * W alone, the input gradient of a
// merged layer. The same shape as lora_forward_tiled with W not transposed.
//
// Block (bx, by) computes the LORA_TILE_M x LORA_TILE_N tile of dx at rows
// m0 = bx*LORA_TILE_M, columns n0 = by*LORA_TILE_N. Per K-step of LORA_TILE_K:
// thread t loads 4 consecutive inner elements of row m0 + t/2 of dy (or U)
// and stores them transposed, K-major, in shared memory; and 4 consecutive
// columns n0 + (t%32)*4 .. +3 of inner row t/32 of W (or A), stored as they
// are. Each is one float4 when the row length is a multiple of 4 and the
// pointers are 16-byte aligned. Shared memory is double-buffered: the next
// tile is fetched into registers while the current one is multiplied, so
// there is one barrier per K-step. Thread (ty, tx) = (t/16, t%16) accumulates
// an 8 x 8 register tile: rows m0 + {ty*4 .. ty*4+3, 64+ty*4 .. 64+ty*4+3},
// columns n0 + {tx*4 .. tx*4+3, 64+tx*4 .. 64+tx*4+3}. Edge tiles are
// guarded: out-of-range rows and columns load zeros and are not stored.
//
// Global memory: reads dy, U (n x .) and W, A (. x in) tile by tile; writes
// each element of dx (n x in) exactly once, never reads it. Shared memory:
// 2*LORA_TILE_K*(LORA_TILE_M+4) + 2*LORA_TILE_K*(LORA_TILE_N+4) floats (static).
#include "tile.cuh"

static_assert(LORA_TILE_N / 4 == LORA_WARP_SIZE && LORA_TILE_THREADS / LORA_WARP_SIZE == LORA_TILE_K,
              "a warp loads one inner row of the right operand per K-step");

extern "C" __global__ void __launch_bounds__(LORA_TILE_THREADS, 2)
    lora_grad_x_tiled(const float* __restrict__ dy, const float* __restrict__ W,
                      const float* __restrict__ U, const float* __restrict__ A,
                      float* __restrict__ dx, int n, int in, int out, int r) {
  __shared__ __align__(16) lora_tile_a sa[2];
  __shared__ __align__(16) lora_tile_b sb[2];
  if (blockDim.x != LORA_TILE_THREADS) return;  // the tiling needs this exact block

  const int t = threadIdx.x;
  const int m0 = blockIdx.x * LORA_TILE_M;
  const int n0 = blockIdx.y * LORA_TILE_N;

  // Left operand: row t/2 of the tile, inner elements (t%2)*4 .. +3.
  const int lrow = t >> 1;
  const int lk = (t & 1) * 4;
  const int arow = m0 + lrow;
  const bool a_ok = arow < n;
  // Right operand: inner row t/32 of the tile, columns (t%32)*4 .. +3.
  const int bk = t / LORA_WARP_SIZE;
  const int bc = (t % LORA_WARP_SIZE) * 4;
  const int bcol = n0 + bc;
  const int ncols = in - bcol;  // columns of W and A from bcol on; <= 0 past the edge

  // Computing: the 8x8 register tile of thread (ty, tx).
  const int tx = t % (LORA_TILE_N / LORA_TILE_TN);
  const int ty = t / (LORA_TILE_N / LORA_TILE_TN);

  const int tiles_w = (out + LORA_TILE_K - 1) / LORA_TILE_K;
  const int tiles = tiles_w + (r > 0 ? (r + LORA_TILE_K - 1) / LORA_TILE_K : 0);
  const bool vec_dy = (out & 3) == 0 && lora_aligned16(dy);
  const bool vec_u = r > 0 && (r & 3) == 0 && lora_aligned16(U);
  const bool vec_w = (in & 3) == 0 && lora_aligned16(W) && (r == 0 || lora_aligned16(A));

  float ra[4], rb[4];
  float acc[8][8];
  lora_tile_zero(acc);

  // Tile kt: K-tile kt of dy/W when kt < tiles_w, else K-tile kt-tiles_w of U/A.
  auto fetch = [&](int kt) {
    if (kt < tiles_w) {
      const int k_ = kt * LORA_TILE_K;
      lora_tile_fetch(dy, out, arow, a_ok, k_ + lk, out, vec_dy, ra);
      lora_fetch4_at(W + static_cast<long long>(k_ + bk) * in + bcol, k_ + bk < out, ncols, vec_w,
                     rb);
    } else {
      const int k_ = (kt - tiles_w) * LORA_TILE_K;
      lora_tile_fetch(U, r, arow, a_ok, k_ + lk, r, vec_u, ra);
      lora_fetch4_at(A + static_cast<long long>(k_ + bk) * in + bcol, k_ + bk < r, ncols, vec_w,
                     rb);
    }
  };
  auto store = [&](int buf, int) {
    LORA_UNROLL
    for (int e = 0; e < 4; ++e) sa[buf][lk + e][lrow] = ra[e];
    *reinterpret_cast<float4*>(&sb[buf][bk][bc]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
  };

  lora_tile_loop(tiles, fetch, store, sa, sb, ty, tx, acc);

  lora_tile_store(dx, n, in, m0, n0, ty, tx, acc);
}

// ---- a W of 16-bit elements --------------------------------------------------
//
// lora_grad_x_tiled_f16 and lora_grad_x_tiled_bf16: the same product with W
// given as binary16 or bfloat16 patterns (LORA_F16, LORA_BF16); dy, U, A and
// dx in float32. The same grid, block, K-steps, shared tiles and register
// tiles as lora_grad_x_tiled, and the same loads of dy, U and A. A K-tile of
// W (8 rows of 128 16-bit elements, 2 KB) is 128 loads of 16 bytes: thread
// t < 128 loads columns n0 + (t%16)*8 .. +7 of inner row t/16 in one, keeps
// the eight elements as they are (four registers, as a float4 of A takes)
// until it widens them into shared memory; threads 128 .. 255 load none. A
// load whose 16 bytes are not aligned (in % 8 != 0) or pass the row's end
// reads scalars.
//
// Global memory: as lora_grad_x_tiled, W read as 16-bit elements. Shared
// memory: as lora_grad_x_tiled.
//
// lora_grad_x_tiled_nf4: the same with an NF4 W (kDT = LORA_NF4), its absmax
// and block size after its codes: a thread's eight columns of a row of W are
// a run of eight codes (lora_fetch8_nf4: one 32-bit load where in % 8 == 0
// and the codes are 4-byte aligned, else code by code), dequantized into
// shared memory as a 16-bit W is widened (see nf4.cu).
template <int kDT>
__device__ __forceinline__ void lora_grad_x_tiled_half(const float* __restrict__ dy,
                                                       const typename lora_elem<kDT>::type* __restrict__ W,
                                                       const float* __restrict__ U,
                                                       const float* __restrict__ A,
                                                       float* __restrict__ dx, int n, int in,
                                                       int out, int r,
                                                       const float* __restrict__ absmax = nullptr,
                                                       int block = 0) {
  constexpr bool kNF4 = kDT == LORA_NF4;
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
  (void)sh;
  (void)tab;
  (void)absmax;
  constexpr int kChunks = LORA_TILE_N / 8;      // 16-byte loads per row of a K-tile of W
  static_assert(kChunks * LORA_TILE_K <= LORA_TILE_THREADS, "a K-tile of W in one load per thread");

  const int t = threadIdx.x;
  const int m0 = blockIdx.x * LORA_TILE_M;
  const int n0 = blockIdx.y * LORA_TILE_N;

  // Left operand: row t/2 of the tile, inner elements (t%2)*4 .. +3.
  const int lrow = t >> 1;
  const int lk = (t & 1) * 4;
  const int arow = m0 + lrow;
  const bool a_ok = arow < n;
  // A: inner row t/32 of the tile, columns (t%32)*4 .. +3.
  const int bk = t / LORA_WARP_SIZE;
  const int bc = (t % LORA_WARP_SIZE) * 4;
  const int bcol = n0 + bc;
  const int ncols = in - bcol;
  // W: threads t < kChunks*LORA_TILE_K, inner row t/kChunks, columns
  // (t%kChunks)*8 .. +7.
  const bool w_loader = t < kChunks * LORA_TILE_K;
  const int wk = (t / kChunks) % LORA_TILE_K;
  const int wc = (t % kChunks) * 8;
  const int wcols = in - (n0 + wc);

  const int tx = t % (LORA_TILE_N / LORA_TILE_TN);
  const int ty = t / (LORA_TILE_N / LORA_TILE_TN);

  const int tiles_w = (out + LORA_TILE_K - 1) / LORA_TILE_K;
  const int tiles = tiles_w + (r > 0 ? (r + LORA_TILE_K - 1) / LORA_TILE_K : 0);
  const bool vec_dy = (out & 3) == 0 && lora_aligned16(dy);
  const bool vec_u = r > 0 && (r & 3) == 0 && lora_aligned16(U);
  const bool vec_a = r > 0 && (in & 3) == 0 && lora_aligned16(A);
  const bool vec_nf4 = (in & 7) == 0 && (reinterpret_cast<uintptr_t>(W) & 3u) == 0;
  (void)vec_nf4;

  // rb: the step's right operand, eight 16-bit elements of W or the bits of
  // four float32 of A.
  float ra[4];
  unsigned rb[4];
  float acc[8][8];
  lora_tile_zero(acc);

  // Step kt: K-tile kt of dy/W when kt < tiles_w, else K-tile kt-tiles_w of U/A.
  auto fetch = [&](int kt) {
    if (kt < tiles_w) {
      const int k_ = kt * LORA_TILE_K;
      lora_tile_fetch(dy, out, arow, a_ok, k_ + lk, out, vec_dy, ra);
      if constexpr (kNF4) {
        if (w_loader) {
          const uint4 v = lora_fetch8_nf4(W, absmax, sh, static_cast<long long>(k_ + wk) * in + n0 + wc,
                                          k_ + wk < out, wcols, vec_nf4);
          rb[0] = v.x;
          rb[1] = v.y;
          rb[2] = v.z;
          rb[3] = v.w;
        }
      } else if (w_loader) {
        const unsigned short* p =
            W + static_cast<long long>(lora_min(k_ + wk, out - 1)) * in + n0 + wc;
        const uint4 v = lora_fetch8_bits_at(p, k_ + wk < out, wcols, lora_aligned16(p));
        rb[0] = v.x;
        rb[1] = v.y;
        rb[2] = v.z;
        rb[3] = v.w;
      }
    } else {
      const int k_ = (kt - tiles_w) * LORA_TILE_K;
      lora_tile_fetch(U, r, arow, a_ok, k_ + lk, r, vec_u, ra);
      float q[4];
      lora_fetch4_at(A + static_cast<long long>(lora_min(k_ + bk, r - 1)) * in + bcol, k_ + bk < r,
                     ncols, vec_a, q);
      LORA_UNROLL
      for (int e = 0; e < 4; ++e) rb[e] = __float_as_uint(q[e]);
    }
  };
  auto store = [&](int buf, int kt) {
    const bool w = kt < tiles_w;  // a K-tile of W, else of A
    LORA_UNROLL
    for (int e = 0; e < 4; ++e) sa[buf][lk + e][lrow] = ra[e];
    if (!w) {
      *reinterpret_cast<float4*>(&sb[buf][bk][bc]) = make_float4(
          __uint_as_float(rb[0]), __uint_as_float(rb[1]), __uint_as_float(rb[2]), __uint_as_float(rb[3]));
    } else if (w_loader) {
      float v[8];
      if constexpr (kNF4)
        lora_unpack8_nf4(make_uint4(rb[0], rb[1], rb[2], rb[3]), tab, v);
      else
        lora_unpack8<kDT>(make_uint4(rb[0], rb[1], rb[2], rb[3]), v);
      *reinterpret_cast<float4*>(&sb[buf][wk][wc]) = make_float4(v[0], v[1], v[2], v[3]);
      *reinterpret_cast<float4*>(&sb[buf][wk][wc + 4]) = make_float4(v[4], v[5], v[6], v[7]);
    }
  };

  lora_tile_loop(tiles, fetch, store, sa, sb, ty, tx, acc);

  lora_tile_store(dx, n, in, m0, n0, ty, tx, acc);
}

LORA_TILE_KERNEL(lora_grad_x_tiled_f16, lora_grad_x_tiled_half<LORA_F16>, __half)
LORA_TILE_KERNEL(lora_grad_x_tiled_bf16, lora_grad_x_tiled_half<LORA_BF16>, __nv_bfloat16)

extern "C" __global__ void __launch_bounds__(LORA_TILE_THREADS, 2)
    lora_grad_x_tiled_nf4(const float* __restrict__ dy, const unsigned char* __restrict__ W,
                          const float* __restrict__ absmax, const float* __restrict__ U,
                          const float* __restrict__ A, float* __restrict__ dx, int n, int in,
                          int out, int r, int block) {
  lora_grad_x_tiled_half<LORA_NF4>(dy, W, U, A, dx, n, in, out, r, absmax, block);
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_grad_x_tiled_nf4)
LORA_EMU_REGISTER(lora_grad_x_tiled)
LORA_EMU_REGISTER(lora_grad_x_tiled_f16)
LORA_EMU_REGISTER(lora_grad_x_tiled_bf16)
#endif
