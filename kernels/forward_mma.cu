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
// and the same for smaller tiles, BM x BN = 64 x 128, 64 x 64 and 32 x 64
// (where a wave of 128 x 128 tiles would not fill the GPU):
//   lora_forward_mma_m64n128_bf16, _m64n64_bf16, _m32n64_bf16, and _f16
//   forms, the same parameters.
//
// Launch geometry:
//   grid  (ceil(n / BM), ceil(out / BN), 1)
//   block (LORA_MMA_THREADS, 1, 1), no dynamic shared memory;
//   static shared memory sizeof(lora_mma_shared<BM, BN>): 40960 bytes
//   (128 x 128), 30720 (64 x 128), 20480 (64 x 64), 15360 (32 x 64).
//
// Block (bx, by) computes the BM x BN tile of y at rows m0 = bx·BM (of x
// and y), columns n0 = by·BN (rows of W). Its 8 warps form a 2 x 4 grid;
// warp (wm, wn) = (warp / 4, warp % 4) owns the BM/2 x BN/4 sub-tile at rows
// m0 + wm·BM/2, columns n0 + wn·BN/4: BM/32 x BN/32 m16n8 tiles (4 x 4, 64
// fp32 accumulators per lane, for 128 x 128). Per K-step of LORA_MMA_BK = 32
// inner elements, thread t loads chunks of 8 consecutive elements (16
// bytes) of the x tile and of the W tile: rows (t % 8) + 8·(t / 32) + 64·h
// (h = 0 .. BM/64 or BN/64, rows past the tile none), elements
// 8·((t / 8) % 4) .. +7, so that the 8 threads of each phase of a warp's
// 16-byte stores to shared memory write 8 rows of one chunk, which
// fall in 32 distinct banks (rows 80 bytes apart), one 16-byte load
// when in % 8 == 0 and x, W are 16-byte aligned, element by element
// otherwise; rows past n (out) and elements past in are zeros. The tiles sit
// row-major in shared memory, rows padded to 40 elements (80 bytes: the 8
// rows an ldmatrix phase reads hit 32 distinct banks), double-buffered: the
// next tile is fetched into registers while the current one is multiplied,
// one barrier per K-step. Each K-step is two k16 steps, each of BM/32
// ldmatrix.x4 for the A fragments of the warp's m16 tiles, BN/64 for the B
// fragments of its n8 tiles, and (BM/32)·(BN/32) mma per warp. Then, for
// the LoRA term, the block stages T[m0 .. m0+BM-1][k0 .. k0+31] and
// B[n0 .. n0+BN-1][k0 .. k0+31] in shared memory (the same bytes as the
// tiles) for k0 = 0, 32, ... < r, and each lane adds sum_k T[i,k]·B[j,k] to
// its accumulators, k ascending (fmaf). Edge tiles are guarded: rows past n
// and columns past out are not stored.
#include "mma.cuh"

#define LORA_MMA_BK 32
#define LORA_MMA_THREADS 256
#define LORA_MMA_WARPS_M 2
#define LORA_MMA_WARPS_N 4
#define LORA_MMA_LDW 20                 // 32-bit words per shared row: 40 elements
#define LORA_MMA_RK 32                  // rank elements staged per step of the LoRA term
#define LORA_MMA_RLD (LORA_MMA_RK + 1)  // floats per staged row

static_assert(LORA_MMA_THREADS == 32 * LORA_MMA_WARPS_M * LORA_MMA_WARPS_N, "a 2 x 4 grid of warps");
static_assert(2 * LORA_MMA_LDW >= LORA_MMA_BK + 8 && (LORA_MMA_LDW * 4) % 16 == 0,
              "shared rows hold a K-step, 16-byte aligned");

// Shared memory of the BM x BN tiles: the double-buffered operand tiles,
// then, after the main loop, the staged slices of T and B of the LoRA term.
template <int BM, int BN>
union lora_mma_shared {
  struct {
    uint32_t x[2][BM][LORA_MMA_LDW];  // pairs of 16-bit elements
    uint32_t w[2][BN][LORA_MMA_LDW];
  } tile;
  struct {
    float t[BM][LORA_MMA_RLD];
    float b[BN][LORA_MMA_RLD];
  } lora;
};
static_assert(sizeof(lora_mma_shared<128, 128>) == 40960, "the documented static shared memory");
static_assert(sizeof(lora_mma_shared<64, 128>) == 30720, "the documented static shared memory");
static_assert(sizeof(lora_mma_shared<64, 64>) == 20480, "the documented static shared memory");
static_assert(sizeof(lora_mma_shared<32, 64>) == 15360, "the documented static shared memory");

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

template <int BM, int BN, bool BF16>
__device__ __forceinline__ void lora_forward_mma_impl(const unsigned short* __restrict__ x,
                                                      const unsigned short* __restrict__ W,
                                                      const float* __restrict__ T,
                                                      const float* __restrict__ B,
                                                      float* __restrict__ y, int n, int in,
                                                      int out, int r) {
  constexpr int WM = BM / LORA_MMA_WARPS_M;  // rows of a warp's sub-tile
  constexpr int WN = BN / LORA_MMA_WARPS_N;  // columns of a warp's sub-tile
  constexpr int MI = WM / 16;                // its m16 tiles
  constexpr int NJ = WN / 8;                 // its n8 tiles, loaded in pairs
  constexpr int XC = (BM * LORA_MMA_BK / 8 + LORA_MMA_THREADS - 1) / LORA_MMA_THREADS;  // chunks of x a thread
  constexpr int WC = (BN * LORA_MMA_BK / 8 + LORA_MMA_THREADS - 1) / LORA_MMA_THREADS;  // chunks of W a thread
  static_assert(WM % 16 == 0 && WN % 16 == 0, "whole m16 tiles and pairs of n8 tiles per warp");
  __shared__ __align__(16) lora_mma_shared<BM, BN> sm;
  if (blockDim.x != LORA_MMA_THREADS) return;  // the tiling needs this exact block

  const int t = threadIdx.x;
  const int lane = t % 32, warp = t / 32;
  const int g = lane >> 2, q = lane & 3;  // groupID, threadID_in_group
  const int m0 = blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int wm = (warp / LORA_MMA_WARPS_N) * WM;  // the warp's sub-tile in the block
  const int wn = (warp % LORA_MMA_WARPS_N) * WN;

  // Loading: rows (t % 8) + 8·(t / 32) + 64·h, elements 8·((t / 8) % 4): a
  // warp's 8 rows of 64 bytes, each quarter of it (the threads one phase of
  // 16-byte stores serves) one chunk of 8 rows, 80 bytes apart: 32 banks.
  const int lrow = (t & 7) + 8 * (t >> 5), lk = ((t >> 3) & 3) * 8;
  const bool vec = (in & 7) == 0 && lora_aligned16(x) && lora_aligned16(W);
  const int tiles = (in + LORA_MMA_BK - 1) / LORA_MMA_BK;

  float acc[MI][NJ][4];  // [m16 tile][n8 tile][c0..c3]
  LORA_UNROLL
  for (int i = 0; i < MI; ++i)
    LORA_UNROLL
  for (int j = 0; j < NJ; ++j)
    LORA_UNROLL
  for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  uint4 rx[XC], rw[WC];
#define LORA_MMA_FETCH(kt)                                                                 \
  do {                                                                                     \
    const int k_ = (kt) * LORA_MMA_BK + lk;                                                \
    LORA_UNROLL                                                                            \
    for (int h = 0; h < XC; ++h) {                                                         \
      const int row_ = lrow + h * (LORA_MMA_THREADS / 4);                                  \
      if (row_ < BM) rx[h] = lora_mma_fetch(x, n, m0 + row_, k_, in, vec);                 \
    }                                                                                      \
    LORA_UNROLL                                                                            \
    for (int h = 0; h < WC; ++h) {                                                         \
      const int row_ = lrow + h * (LORA_MMA_THREADS / 4);                                  \
      if (row_ < BN) rw[h] = lora_mma_fetch(W, out, n0 + row_, k_, in, vec);               \
    }                                                                                      \
  } while (0)
#define LORA_MMA_STORE(buf)                                                                \
  do {                                                                                     \
    LORA_UNROLL                                                                            \
    for (int h = 0; h < XC; ++h) {                                                         \
      const int row_ = lrow + h * (LORA_MMA_THREADS / 4);                                  \
      if (row_ < BM) *reinterpret_cast<uint4*>(&sm.tile.x[(buf)][row_][lk / 2]) = rx[h];   \
    }                                                                                      \
    LORA_UNROLL                                                                            \
    for (int h = 0; h < WC; ++h) {                                                         \
      const int row_ = lrow + h * (LORA_MMA_THREADS / 4);                                  \
      if (row_ < BN) *reinterpret_cast<uint4*>(&sm.tile.w[(buf)][row_][lk / 2]) = rw[h];   \
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
      uint32_t bf[NJ][2];
      LORA_UNROLL
      for (int p = 0; p < NJ / 2; ++p) {
        uint32_t m[4];
        lora_ldmatrix_x4(m, &sm.tile.w[buf][wn + p * 16 + (lane & 7) + (lane >> 4) * 8][ks + ((lane >> 3) & 1) * 4]);
        bf[2 * p][0] = m[0];
        bf[2 * p][1] = m[1];
        bf[2 * p + 1][0] = m[2];
        bf[2 * p + 1][1] = m[3];
      }
      LORA_UNROLL
      for (int i = 0; i < MI; ++i) {
        // A fragment of m16 tile i: matrices (rows 0-7, k 0-7), (rows 8-15,
        // k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15): a[0] .. a[3].
        uint32_t af[4];
        lora_ldmatrix_x4(af, &sm.tile.x[buf][wm + i * 16 + (lane & 15)][ks + (lane >> 4) * 4]);
        LORA_UNROLL
        for (int j = 0; j < NJ; ++j) lora_mma_m16n8k16<BF16>(acc[i][j], af, bf[j], acc[i][j]);
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
      for (int e = t; e < BM * LORA_MMA_RK; e += LORA_MMA_THREADS) {
        const int row = e / LORA_MMA_RK, k = e % LORA_MMA_RK;
        sm.lora.t[row][k] = k < kn && m0 + row < n ? __ldg(T + static_cast<long long>(m0 + row) * r + k0 + k) : 0.0f;
      }
      for (int e = t; e < BN * LORA_MMA_RK; e += LORA_MMA_THREADS) {
        const int row = e / LORA_MMA_RK, k = e % LORA_MMA_RK;
        sm.lora.b[row][k] = k < kn && n0 + row < out ? __ldg(B + static_cast<long long>(n0 + row) * r + k0 + k) : 0.0f;
      }
      __syncthreads();
      for (int k = 0; k < kn; ++k) {
        float bv[NJ][2];
        LORA_UNROLL
        for (int j = 0; j < NJ; ++j) {
          bv[j][0] = sm.lora.b[wn + j * 8 + 2 * q][k];
          bv[j][1] = sm.lora.b[wn + j * 8 + 2 * q + 1][k];
        }
        LORA_UNROLL
        for (int i = 0; i < MI; ++i) {
          const float t0 = sm.lora.t[wm + i * 16 + g][k];
          const float t8 = sm.lora.t[wm + i * 16 + g + 8][k];
          LORA_UNROLL
          for (int j = 0; j < NJ; ++j) {
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
  for (int i = 0; i < MI; ++i)
    LORA_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int row = m0 + wm + i * 16 + g + h * 8;
    if (row >= n) continue;
    float* yr = y + static_cast<long long>(row) * out;
    LORA_UNROLL
    for (int j = 0; j < NJ; ++j) {
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

// lora_forward_mma_bf16, _f16: 128 x 128 tiles; lora_forward_mma_m64n128_*,
// _m64n64_*, _m32n64_*: BM x BN tiles.
#define LORA_MMA_KERNEL(name, BM, BN, BF16, T16)                                                       \
  extern "C" __global__ void __launch_bounds__(LORA_MMA_THREADS)                                      \
      name(const T16* __restrict__ x, const T16* __restrict__ W, const float* __restrict__ T,         \
           const float* __restrict__ B, float* __restrict__ y, int n, int in, int out, int r) {       \
    lora_forward_mma_impl<BM, BN, BF16>(reinterpret_cast<const unsigned short*>(x),                   \
                                        reinterpret_cast<const unsigned short*>(W), T, B, y, n, in,   \
                                        out, r);                                                      \
  }
LORA_MMA_KERNEL(lora_forward_mma_bf16, 128, 128, true, __nv_bfloat16)
LORA_MMA_KERNEL(lora_forward_mma_f16, 128, 128, false, __half)
LORA_MMA_KERNEL(lora_forward_mma_m64n128_bf16, 64, 128, true, __nv_bfloat16)
LORA_MMA_KERNEL(lora_forward_mma_m64n128_f16, 64, 128, false, __half)
LORA_MMA_KERNEL(lora_forward_mma_m64n64_bf16, 64, 64, true, __nv_bfloat16)
LORA_MMA_KERNEL(lora_forward_mma_m64n64_f16, 64, 64, false, __half)
LORA_MMA_KERNEL(lora_forward_mma_m32n64_bf16, 32, 64, true, __nv_bfloat16)
LORA_MMA_KERNEL(lora_forward_mma_m32n64_f16, 32, 64, false, __half)
#undef LORA_MMA_KERNEL

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_forward_mma_bf16)
LORA_EMU_REGISTER(lora_forward_mma_f16)
LORA_EMU_REGISTER(lora_forward_mma_m64n128_bf16)
LORA_EMU_REGISTER(lora_forward_mma_m64n128_f16)
LORA_EMU_REGISTER(lora_forward_mma_m64n64_bf16)
LORA_EMU_REGISTER(lora_forward_mma_m64n64_f16)
LORA_EMU_REGISTER(lora_forward_mma_m32n64_bf16)
LORA_EMU_REGISTER(lora_forward_mma_m32n64_f16)
#endif
