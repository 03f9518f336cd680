// tile.cuh: the pieces shared by the two tiled SGEMM kernels,
// lora_forward_tiled (y = [x | T]·[W | B]ᵀ) and lora_grad_x_tiled
// (dx = [dy | U]·[W ; A]): a block computes a LORA_TILE_M x LORA_TILE_N tile
// of the output from K-major tiles of both operands in shared memory, thread
// (ty, tx) = (t/16, t%16) an 8 x 8 register tile of rows
// m0 + {ty*4 .. ty*4+3, 64+ty*4 .. 64+ty*4+3} and columns
// n0 + {tx*4 .. tx*4+3, 64+tx*4 .. 64+tx*4+3}. Their loads from global
// memory are in tile_load.cuh.
#ifndef LORA_TILE_CUH
#define LORA_TILE_CUH

#include "common.cuh"
#include "tile_load.cuh"

#define LORA_TILE_PAD 4
#define LORA_TILE_HM (LORA_TILE_M / 2)
#define LORA_TILE_HN (LORA_TILE_N / 2)

static_assert(LORA_TILE_THREADS == (LORA_TILE_M / LORA_TILE_TM) * (LORA_TILE_N / LORA_TILE_TN),
              "one 8x8 register tile per thread");
static_assert(LORA_TILE_THREADS * 4 == LORA_TILE_M * LORA_TILE_K &&
                  LORA_TILE_THREADS * 4 == LORA_TILE_N * LORA_TILE_K,
              "each thread loads 4 elements of each operand per K-step");
static_assert(LORA_TILE_TM == 8 && LORA_TILE_TN == 8 && LORA_TILE_K == 8,
              "the thread mappings assume 8x8 register tiles and K-steps of 8");

// A K-major tile of the left (M) or right (N) operand in shared memory.
typedef float lora_tile_a[LORA_TILE_K][LORA_TILE_M + LORA_TILE_PAD];
typedef float lora_tile_b[LORA_TILE_K][LORA_TILE_N + LORA_TILE_PAD];

__device__ __forceinline__ void lora_tile_zero(float (&acc)[8][8]) {
  LORA_UNROLL
  for (int i = 0; i < 8; ++i) {
    LORA_UNROLL
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
  }
}

// acc += the products of one K-tile: sa and sb read from shared memory as
// float4, 64 fmaf per inner element.
__device__ __forceinline__ void lora_tile_mma(const lora_tile_a& sa, const lora_tile_b& sb, int ty,
                                              int tx, float (&acc)[8][8]) {
  LORA_UNROLL
  for (int kk = 0; kk < LORA_TILE_K; ++kk) {
    const float4 a0 = *reinterpret_cast<const float4*>(&sa[kk][ty * 4]);
    const float4 a1 = *reinterpret_cast<const float4*>(&sa[kk][LORA_TILE_HM + ty * 4]);
    const float4 b0 = *reinterpret_cast<const float4*>(&sb[kk][tx * 4]);
    const float4 b1 = *reinterpret_cast<const float4*>(&sb[kk][LORA_TILE_HN + tx * 4]);
    const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
    LORA_UNROLL
    for (int i = 0; i < 8; ++i) {
      LORA_UNROLL
      for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
}

// The K-loop of a tiled kernel over its `tiles` K-tiles, shared memory
// double-buffered: fetch(kt) loads K-tile kt of both operands from global
// memory into the thread's registers and store(buf, kt) writes them into
// sa[buf] and sb[buf]; K-tile kt+1 is fetched while K-tile kt is multiplied
// into acc, so there is one barrier per K-step. Every thread of the block
// calls it (it holds __syncthreads).
template <class Fetch, class Store>
__device__ __forceinline__ void lora_tile_loop(int tiles, Fetch&& fetch, Store&& store,
                                               const lora_tile_a (&sa)[2],
                                               const lora_tile_b (&sb)[2], int ty, int tx,
                                               float (&acc)[8][8]) {
  fetch(0);
  store(0, 0);
  __syncthreads();

  for (int kt = 0; kt < tiles; ++kt) {
    const int buf = kt & 1;
    const bool more = kt + 1 < tiles;
    if (more) fetch(kt + 1);

    lora_tile_mma(sa[buf], sb[buf], ty, tx, acc);

    // The other buffer was last read in step kt-1, which ended with a barrier.
    if (more) store(buf ^ 1, kt + 1);
    __syncthreads();
  }
}

// Writes thread (ty, tx)'s register tile into the rows x cols row-major
// output c at block origin (m0, n0), once, float4 where aligned, skipping
// what lies past the edges.
__device__ __forceinline__ void lora_tile_store(float* __restrict__ c, int rows, int cols, int m0,
                                                int n0, int ty, int tx, const float (&acc)[8][8]) {
  const bool vec = (cols & 3) == 0 && lora_aligned16(c);
  LORA_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int row = m0 + (i < 4 ? ty * 4 + i : LORA_TILE_HM + ty * 4 + (i - 4));
    if (row >= rows) continue;
    float* cr = c + static_cast<long long>(row) * cols;
    LORA_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int col = n0 + h * LORA_TILE_HN + tx * 4;
      if (vec && col + 3 < cols) {
        *reinterpret_cast<float4*>(cr + col) =
            make_float4(acc[i][h * 4], acc[i][h * 4 + 1], acc[i][h * 4 + 2], acc[i][h * 4 + 3]);
      } else {
        LORA_UNROLL
        for (int e = 0; e < 4; ++e)
          if (col + e < cols) cr[col + e] = acc[i][h * 4 + e];
      }
    }
  }
}

// The extern "C" entry point `name` of a tiled kernel whose W has the C type
// WT (float, __half or __nv_bfloat16), with the launch bounds of the tiling.
// It calls impl(lhs, lora_bits(W), lhs_r, rhs_r, dst, n, in, out, r):
// dst = [lhs | lhs_r]·[W | rhs_r]ᵀ for lora_forward_tiled (x, W, T, B, y),
// dst = [lhs | lhs_r]·[W ; rhs_r] for lora_grad_x_tiled (dy, W, U, A, dx).
#define LORA_TILE_KERNEL(name, impl, WT)                                     \
  extern "C" __global__ void __launch_bounds__(LORA_TILE_THREADS, 2)         \
      name(const float* __restrict__ lhs, const WT* __restrict__ W,          \
           const float* __restrict__ lhs_r, const float* __restrict__ rhs_r, \
           float* __restrict__ dst, int n, int in, int out, int r) {         \
    impl(lhs, lora_bits(W), lhs_r, rhs_r, dst, n, in, out, r);               \
  }

#endif  // LORA_TILE_CUH
