// forward_mma.cu: y = x·Wᵀ + T·Bᵀ on tensor cores, x and W in bfloat16 or
// binary16, for sm_80 and newer.
//
// y[i,j] = sum_c x[i,c]·W[j,c] + sum_k T[i,k]·B[j,k]: the first sum by
// mma.sync m16n8k16 (16-bit inputs, fp32 accumulation), the second, the
// rank-r LoRA term with T = s·x·Aᵀ (n x r, from lora_shrink) and B (out x r)
// in float32, added in fp32 to each accumulator after the main loop. y is
// float32 (n x out), each element written exactly once, never read.
// T == nullptr or r == 0 is the plain Linear y = x·Wᵀ (B is then not read).
//
//   lora_forward_mma_bf16(const __nv_bfloat16* x, const __nv_bfloat16* W,
//                         const float* T, const float* B, float* y,
//                         int n, int in, int out, int r)
//   lora_forward_mma_f16(const __half* x, const __half* W, same)
//
// Launch geometry:
//   grid  (ceil(n / LORA_MMA_BM), ceil(out / LORA_MMA_BN), 1)
//   block (LORA_MMA_THREADS, 1, 1), no dynamic shared memory;
//   static shared memory sizeof(lora_mma_shared) = 40960 bytes.
//
// Block (bx, by) computes the LORA_MMA_BM x LORA_MMA_BN tile of y at rows
// m0 = bx·BM (of x and y), columns n0 = by·BN (rows of W). Its 8 warps form a
// 2 x 4 grid; warp (wm, wn) = (warp / 4, warp % 4) owns the 64 x 32
// sub-tile at rows m0 + 64·wm, columns n0 + 32·wn: 4 x 4 m16n8 tiles, 64
// fp32 accumulators per lane. Per K-step of LORA_MMA_BK = 32 inner
// elements, thread t loads chunks t and t + 256 of 8 consecutive elements
// (16 bytes) of the x tile and of the W tile (chunk c: row c / 4, elements
// 8·(c % 4) .. +7), one 16-byte load when in % 8 == 0 and x, W are 16-byte
// aligned, element by element otherwise; rows past n (out) and elements
// past in are zeros. The tiles sit row-major in shared memory, rows padded
// to 40 elements (80 bytes: the 8 rows an ldmatrix phase reads hit 32
// distinct banks), double-buffered: the next tile is fetched into registers
// while the current one is multiplied, one barrier per K-step. Each K-step
// is two k16 steps, each of 6 ldmatrix.x4 (4 for the A fragments of the
// warp's m16 tiles, 2 for the B fragments of its n8 tiles) and 16 mma per
// warp. Then, for the LoRA term, the block stages
// T[m0 .. m0+127][k0 .. k0+31] and B[n0 .. n0+127][k0 .. k0+31] in shared
// memory (the same bytes as the tiles) for k0 = 0, 32, ... < r, and each
// lane adds sum_k T[i,k]·B[j,k] to its accumulators, k ascending (fmaf).
// Edge tiles are guarded: rows past n and columns past out are not stored.
#include "mma.cuh"

#define LORA_MMA_BM 128
#define LORA_MMA_BN 128
#define LORA_MMA_BK 32
#define LORA_MMA_THREADS 256
#define LORA_MMA_WARPS_N 4
#define LORA_MMA_WM 64                  // rows of a warp's sub-tile
#define LORA_MMA_WN 32                  // columns of a warp's sub-tile
#define LORA_MMA_LDW 20                 // 32-bit words per shared row: 40 elements
#define LORA_MMA_RK 32                  // rank elements staged per step of the LoRA term
#define LORA_MMA_RLD (LORA_MMA_RK + 1)  // floats per staged row

static_assert(LORA_MMA_THREADS == 32 * (LORA_MMA_BM / LORA_MMA_WM) * (LORA_MMA_BN / LORA_MMA_WN) &&
                  LORA_MMA_BN / LORA_MMA_WN == LORA_MMA_WARPS_N,
              "one warp per 64 x 32 sub-tile");
static_assert(LORA_MMA_BM == LORA_MMA_BN && 2 * LORA_MMA_THREADS * 8 == LORA_MMA_BM * LORA_MMA_BK,
              "each thread loads two 8-element chunks of each operand per K-step");
static_assert(2 * LORA_MMA_LDW >= LORA_MMA_BK + 8 && (LORA_MMA_LDW * 4) % 16 == 0,
              "shared rows hold a K-step, 16-byte aligned");

// Shared memory: the double-buffered operand tiles, then, after the main
// loop, the staged slices of T and B of the LoRA term.
union lora_mma_shared {
  struct {
    uint32_t x[2][LORA_MMA_BM][LORA_MMA_LDW];  // pairs of 16-bit elements
    uint32_t w[2][LORA_MMA_BN][LORA_MMA_LDW];
  } tile;
  struct {
    float t[LORA_MMA_BM][LORA_MMA_RLD];
    float b[LORA_MMA_BN][LORA_MMA_RLD];
  } lora;
};
static_assert(sizeof(lora_mma_shared) == 40960, "the documented static shared memory");

// v = src[row, k .. k+7] of a row-major matrix of 16-bit elements with `in`
// columns, as four 32-bit pairs; zero where row >= rows or k+e >= in.
__device__ __forceinline__ uint4 lora_mma_fetch(const unsigned short* __restrict__ src, int rows,
                                                int row, int k, int in, bool vec) {
  if (row < rows && vec && k < in)  // in % 8 == 0: the whole chunk is in range
    return __ldg(reinterpret_cast<const uint4*>(src + static_cast<long long>(row) * in + k));
  unsigned e[8];
  LORA_UNROLL
  for (int j = 0; j < 8; ++j)
    e[j] = row < rows && k + j < in ? __ldg(src + static_cast<long long>(row) * in + k + j) : 0u;
  return make_uint4(e[0] | e[1] << 16, e[2] | e[3] << 16, e[4] | e[5] << 16, e[6] | e[7] << 16);
}

template <bool BF16>
__device__ __forceinline__ void lora_forward_mma_impl(const unsigned short* __restrict__ x,
                                                      const unsigned short* __restrict__ W,
                                                      const float* __restrict__ T,
                                                      const float* __restrict__ B,
                                                      float* __restrict__ y, int n, int in,
                                                      int out, int r) {
  __shared__ __align__(16) lora_mma_shared sm;
  if (blockDim.x != LORA_MMA_THREADS) return;  // the tiling needs this exact block

  const int t = threadIdx.x;
  const int lane = t % 32, warp = t / 32;
  const int g = lane >> 2, q = lane & 3;  // groupID, threadID_in_group
  const int m0 = blockIdx.x * LORA_MMA_BM;
  const int n0 = blockIdx.y * LORA_MMA_BN;
  const int wm = (warp / LORA_MMA_WARPS_N) * LORA_MMA_WM;  // the warp's sub-tile in the block
  const int wn = (warp % LORA_MMA_WARPS_N) * LORA_MMA_WN;

  // Loading: chunks t and t + 256, row c / 4, elements 8·(c % 4).
  const int lrow = t >> 2, lk = (t & 3) * 8;
  const bool vec = (in & 7) == 0 && lora_aligned16(x) && lora_aligned16(W);
  const int tiles = (in + LORA_MMA_BK - 1) / LORA_MMA_BK;

  float acc[4][4][4];  // [m16 tile][n8 tile][c0..c3]
  LORA_UNROLL
  for (int i = 0; i < 4; ++i)
    LORA_UNROLL
  for (int j = 0; j < 4; ++j)
    LORA_UNROLL
  for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  uint4 rx[2], rw[2];
#define LORA_MMA_FETCH(kt)                                                                 \
  do {                                                                                     \
    LORA_UNROLL                                                                            \
    for (int h = 0; h < 2; ++h) {                                                          \
      const int row_ = lrow + h * (LORA_MMA_THREADS / 4), k_ = (kt) * LORA_MMA_BK + lk;    \
      rx[h] = lora_mma_fetch(x, n, m0 + row_, k_, in, vec);                                \
      rw[h] = lora_mma_fetch(W, out, n0 + row_, k_, in, vec);                              \
    }                                                                                      \
  } while (0)
#define LORA_MMA_STORE(buf)                                                                \
  do {                                                                                     \
    LORA_UNROLL                                                                            \
    for (int h = 0; h < 2; ++h) {                                                          \
      const int row_ = lrow + h * (LORA_MMA_THREADS / 4);                                  \
      *reinterpret_cast<uint4*>(&sm.tile.x[(buf)][row_][lk / 2]) = rx[h];                  \
      *reinterpret_cast<uint4*>(&sm.tile.w[(buf)][row_][lk / 2]) = rw[h];                  \
    }                                                                                      \
  } while (0)

  if (tiles > 0) {
    LORA_MMA_FETCH(0);
    LORA_MMA_STORE(0);
  }
  __syncthreads();

  for (int kt = 0; kt < tiles; ++kt) {
    const int buf = kt & 1;
    const bool more = kt + 1 < tiles;
    if (more) LORA_MMA_FETCH(kt + 1);

    LORA_UNROLL
    for (int ks = 0; ks < LORA_MMA_BK / 2; ks += 8) {  // k16 steps, in 32-bit words
      // B fragments of n8 tiles 2p and 2p+1 by one ldmatrix.x4: matrices
      // (rows 0-7, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 0-7),
      // (rows 8-15, k 8-15) of the 16 rows of W, which are b[2p][0],
      // b[2p][1], b[2p+1][0], b[2p+1][1].
      uint32_t bf[4][2];
      LORA_UNROLL
      for (int p = 0; p < 2; ++p) {
        uint32_t m[4];
        lora_ldmatrix_x4(m, &sm.tile.w[buf][wn + p * 16 + (lane & 7) + (lane >> 4) * 8][ks + ((lane >> 3) & 1) * 4]);
        bf[2 * p][0] = m[0];
        bf[2 * p][1] = m[1];
        bf[2 * p + 1][0] = m[2];
        bf[2 * p + 1][1] = m[3];
      }
      LORA_UNROLL
      for (int i = 0; i < 4; ++i) {
        // A fragment of m16 tile i: matrices (rows 0-7, k 0-7), (rows 8-15,
        // k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15): a[0] .. a[3].
        uint32_t af[4];
        lora_ldmatrix_x4(af, &sm.tile.x[buf][wm + i * 16 + (lane & 15)][ks + (lane >> 4) * 4]);
        LORA_UNROLL
        for (int j = 0; j < 4; ++j) lora_mma_m16n8k16<BF16>(acc[i][j], af, bf[j], acc[i][j]);
      }
    }

    // The other buffer was last read in step kt-1, which ended with a barrier.
    if (more) LORA_MMA_STORE(buf ^ 1);
    __syncthreads();
  }
#undef LORA_MMA_FETCH
#undef LORA_MMA_STORE

  // The LoRA term, in fp32: the tiles' shared memory is free (the main loop
  // ended with a barrier).
  if (T != nullptr && r > 0) {
    for (int k0 = 0; k0 < r; k0 += LORA_MMA_RK) {
      const int kn = lora_min(LORA_MMA_RK, r - k0);
      for (int e = t; e < LORA_MMA_BM * LORA_MMA_RK; e += LORA_MMA_THREADS) {
        const int row = e / LORA_MMA_RK, k = e % LORA_MMA_RK;
        const bool kin = k < kn;
        sm.lora.t[row][k] = kin && m0 + row < n ? __ldg(T + static_cast<long long>(m0 + row) * r + k0 + k) : 0.0f;
        sm.lora.b[row][k] = kin && n0 + row < out ? __ldg(B + static_cast<long long>(n0 + row) * r + k0 + k) : 0.0f;
      }
      __syncthreads();
      for (int k = 0; k < kn; ++k) {
        float bv[4][2];
        LORA_UNROLL
        for (int j = 0; j < 4; ++j) {
          bv[j][0] = sm.lora.b[wn + j * 8 + 2 * q][k];
          bv[j][1] = sm.lora.b[wn + j * 8 + 2 * q + 1][k];
        }
        LORA_UNROLL
        for (int i = 0; i < 4; ++i) {
          const float t0 = sm.lora.t[wm + i * 16 + g][k];
          const float t8 = sm.lora.t[wm + i * 16 + g + 8][k];
          LORA_UNROLL
          for (int j = 0; j < 4; ++j) {
            acc[i][j][0] = fmaf(t0, bv[j][0], acc[i][j][0]);
            acc[i][j][1] = fmaf(t0, bv[j][1], acc[i][j][1]);
            acc[i][j][2] = fmaf(t8, bv[j][0], acc[i][j][2]);
            acc[i][j][3] = fmaf(t8, bv[j][1], acc[i][j][3]);
          }
        }
      }
      __syncthreads();
    }
  }

  // c0, c1 at row g, columns 2q, 2q+1; c2, c3 at row g + 8.
  const bool pair = (out & 1) == 0 && (reinterpret_cast<uintptr_t>(y) & 7u) == 0;
  LORA_UNROLL
  for (int i = 0; i < 4; ++i)
    LORA_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int row = m0 + wm + i * 16 + g + h * 8;
    if (row >= n) continue;
    float* yr = y + static_cast<long long>(row) * out;
    LORA_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int col = n0 + wn + j * 8 + 2 * q;
      const float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
      if (pair && col + 1 < out) {
        *reinterpret_cast<float2*>(yr + col) = make_float2(v0, v1);
      } else {
        if (col < out) yr[col] = v0;
        if (col + 1 < out) yr[col + 1] = v1;
      }
    }
  }
}

extern "C" __global__ void __launch_bounds__(LORA_MMA_THREADS)
    lora_forward_mma_bf16(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ W,
                          const float* __restrict__ T, const float* __restrict__ B,
                          float* __restrict__ y, int n, int in, int out, int r) {
  lora_forward_mma_impl<true>(reinterpret_cast<const unsigned short*>(x),
                              reinterpret_cast<const unsigned short*>(W), T, B, y, n, in, out, r);
}

extern "C" __global__ void __launch_bounds__(LORA_MMA_THREADS)
    lora_forward_mma_f16(const __half* __restrict__ x, const __half* __restrict__ W,
                         const float* __restrict__ T, const float* __restrict__ B,
                         float* __restrict__ y, int n, int in, int out, int r) {
  lora_forward_mma_impl<false>(reinterpret_cast<const unsigned short*>(x),
                               reinterpret_cast<const unsigned short*>(W), T, B, y, n, in, out, r);
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_forward_mma_bf16)
LORA_EMU_REGISTER(lora_forward_mma_f16)
#endif
