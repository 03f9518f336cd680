// forward_mtile.cu: P = x * [W ; A]^T with small-M tiles and a split of the
// inner dimension, for 17 <= n where 128 x 128 tiles would leave the GPU
// idle or pad most of their rows; and lora_forward_reduce, which sums the
// splits and applies the adapter: y = P[:, :out] + s * P[:, out:] * B^T.
//
// P[z][i,j] = sum over the K-steps of split z of x[i,c] * V[j,c], V = [W ; A]
// the (out + r) x in stack, fp32 accumulation (see forward_small.cu for why A
// rides along with W instead of a separate shrink launch).
//
// Block (bx, by, z) computes the BM x LORA_MT_N tile of P[z] at rows
// m0 = bx*BM of x, rows n0 = by*LORA_MT_N of V, over K-steps [z*per,
// min(tiles, (z+1)*per)) of LORA_MT_K elements. Per K-step thread t loads 4
// float4 of V (rows t/8 + 32q, elements (t%8)*4 .. +3; one 128-byte line per 8
// threads) and BM*8/256 float4 of x the same way; float4 when in % 4 == 0 and
// the pointers are 16-byte aligned, scalars otherwise. The loads of step k+1
// and k+2 are in flight in two register stages while step k is multiplied
// out of shared memory, so each block keeps 2*LORA_MT_N*LORA_MT_K*4 = 32 KB
// of V in flight (what one block per SM needs on an H200 when a narrow
// output leaves fewer blocks than SMs); BM = 64, chosen for larger n, has the
// registers for one stage only (16 KB).
// Thread (ty, tx) = (t/16, t%16) accumulates a (BM/16) x 8 register tile:
// rows m0 + ty*BM/16 .., columns n0 + tx*4 .. +3 and n0 + 64 + tx*4 .. +3.
//
// lora_forward_m16_nf4, _m32_, _m64_: an NF4 W (its absmax and block size
// after its codes) is loaded as a 16-bit one, each 8-element vector a run
// of eight codes (lora_fetch8_nf4, 4 bytes where in % 8 == 0; see nf4.cu),
// dequantized as it is stored to shared memory; A's rows as float32.
//
// Global memory: reads x and V tile by tile (V once per M-tile, which run
// side by side and share it through L2); writes each element of P[z] once.
// Shared memory: LORA_MT_K*(BM+1) + LORA_MT_K*(LORA_MT_N+4) floats (static).
#include "tile.cuh"

static_assert(LORA_MT_THREADS == 256 && LORA_MT_N == 128 && LORA_MT_K == 32,
              "lora_forward_m*: 16 x 16 threads, 4 float4 of V per thread per K-step");

#define LORA_MT_VQ (LORA_MT_N * LORA_MT_K / 4 / LORA_MT_THREADS) /* float4 of V per thread */
#define LORA_MT_HQ (LORA_MT_N * LORA_MT_K / 8 / LORA_MT_THREADS) /* 8-element vectors of a 16-bit V */

// The BM x LORA_MT_N tile of P[z] at rows m0 of x and rows n0 .. of V, all
// of them rows of one source S: W (type DT; jb = 0, jend = out) or A
// (float32; jb = out, jend = out + r). rows = out + r is P's row length.
// A 16-bit S is loaded as LORA_MT_HQ 16-byte vectors per thread per K-step
// (row t/4 + 64q, elements (t%4)*8 .. +7), kept as bits in the register
// stages and widened as they are stored to shared memory.
template <int BM, int DT>
__device__ __forceinline__ void lora_forward_mtile(const float* __restrict__ x,
                                                   const typename lora_elem<DT>::type* __restrict__ S,
                                                   float* __restrict__ P, int n, int in, int rows,
                                                   int jb, int jend, int n0,
                                                   float (&sa)[LORA_MT_K][BM + 1],
                                                   float (&sb)[LORA_MT_K][LORA_MT_N + 4],
                                                   const float* __restrict__ absmax = nullptr,
                                                   int sh = 0, const float* tab = nullptr) {
  constexpr int TM = BM / 16;
  constexpr int XQ = (BM * LORA_MT_K / 4 + LORA_MT_THREADS - 1) / LORA_MT_THREADS;
  constexpr bool kNF4 = DT == LORA_NF4;
  constexpr bool kHalf = DT != LORA_F32;  // S is loaded in runs of 8 elements
  (void)absmax;
  (void)sh;
  (void)tab;

  const int t = threadIdx.x;
  const int m0 = blockIdx.x * BM;
  const int tiles = (in + LORA_MT_K - 1) / LORA_MT_K;
  const int per = (tiles + static_cast<int>(gridDim.z) - 1) / static_cast<int>(gridDim.z);
  const int kt0 = lora_min(tiles, static_cast<int>(blockIdx.z) * per);
  const int kt1 = lora_min(tiles, kt0 + per);
  // An NF4 S: 32-bit words of codes, which need no alignment of x.
  const bool vec = kNF4 ? (in & 7) == 0 && (reinterpret_cast<uintptr_t>(S) & 3u) == 0
                        : (in & (kHalf ? 7 : 3)) == 0 && lora_aligned16(x) && lora_aligned16(S);
  const bool xvec = (in & 3) == 0 && lora_aligned16(x);

  // Loading: float4 slot (row, k) = (idx/8, (idx%8)*4); 16-bit vector slot
  // (row, k) = (t/4 + 64q, (t%4)*8).
  const int lk = (t & 7) * 4;
  const int hk = (t & 3) * 8;
  constexpr int NQ = kHalf ? LORA_MT_HQ : LORA_MT_VQ;
  int vrow[NQ];
  bool vok[NQ];
  LORA_UNROLL
  for (int q = 0; q < NQ; ++q) {
    const int j = n0 + (kHalf ? (t >> 2) + q * (LORA_MT_THREADS / 4) : (t >> 3) + q * (LORA_MT_THREADS / 8));
    vok[q] = j < jend;
    vrow[q] = j - jb;
  }
  // Two register stages (one for BM = 64): while step kt is multiplied out
  // of shared memory, steps kt+1 and kt+2 are in flight.
  constexpr int kStages = BM == 64 ? 1 : 2;
  float ra[kStages][XQ][4], rb[kStages][kHalf ? 1 : LORA_MT_VQ][4];
  uint4 rh[kStages][kHalf ? LORA_MT_HQ : 1];
  (void)rb;
  (void)rh;

  const int ty = t / 16;
  const int tx = t % 16;
  // sb holds [W; A]'s K-step transposed, row k of shared memory the column
  // k of the step, its columns swizzled: column c of row k is stored at
  // c ^ swz(k), which moves whole float4s (the bits it flips are those of
  // 4 and up), so that the 32 stores of a warp fall in 32 distinct banks.
  // float32 stores: a warp's threads hold 8 values of k (4 apart) by 4
  // columns; rows 132 floats apart put k = 4i and k = 4i + 8 in one bank,
  // so bits 1-2 of k/4 move the column by multiples of 4. 16-bit stores: 4
  // values of k (8 apart) by 8 columns, every k in one bank, so k/8 moves
  // it by multiples of 8.
  // A thread's stores all fall in one group of 8 rows (lk + e and hk + e
  // below), so its swizzled column one constant, sc; the reads' (swz of an
  // unrolled kk) are constants of the code.
  auto swz = [](int k) { return kHalf ? ((k >> 3) & 3) << 3 : ((k >> 3) & 3) << 2; };
  // The column a thread stores at, swizzled: its bits under 5 (6 for the
  // 16-bit stores) take the swizzle, q's multiples of 32 (64) those above.
  const int sc = kHalf ? (t >> 2) ^ swz(hk) : (t >> 3) ^ swz(lk);
  float acc[TM][8];
  LORA_UNROLL
  for (int i = 0; i < TM; ++i) {
    LORA_UNROLL
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
  }

#define LORA_MT_FETCH(kt, st)                                                            \
  do {                                                                                   \
    const int k_ = (kt) * LORA_MT_K + lk;                                                \
    if constexpr (kNF4) {                                                                \
      LORA_UNROLL                                                                        \
      for (int q = 0; q < LORA_MT_HQ; ++q)                                               \
        rh[st][q] = lora_fetch8_nf4(reinterpret_cast<const unsigned char*>(S), absmax,   \
                                    sh, static_cast<long long>(vrow[q]) * in +           \
                                    (kt) * LORA_MT_K + hk, vok[q],                       \
                                    in - ((kt) * LORA_MT_K + hk), vec);                  \
    } else if constexpr (kHalf) {                                                        \
      LORA_UNROLL                                                                        \
      for (int q = 0; q < LORA_MT_HQ; ++q)                                               \
        rh[st][q] = lora_fetch8_bits(reinterpret_cast<const unsigned short*>(S), in,     \
                                     vrow[q], vok[q], (kt) * LORA_MT_K + hk, in, vec);   \
    } else {                                                                             \
      LORA_UNROLL                                                                        \
      for (int q = 0; q < LORA_MT_VQ; ++q)                                               \
        lora_tile_fetch(reinterpret_cast<const float*>(S), in, vrow[q], vok[q], k_, in,  \
                        vec, rb[st][q]);                                                 \
    }                                                                                    \
    LORA_UNROLL                                                                          \
    for (int q = 0; q < XQ; ++q) {                                                       \
      const int idx = t + q * LORA_MT_THREADS;                                           \
      if (idx < BM * LORA_MT_K / 4)                                                      \
        lora_tile_fetch(x, in, m0 + (idx >> 3), m0 + (idx >> 3) < n, k_, in, xvec, ra[st][q]); \
    }                                                                                    \
  } while (0)

#define LORA_MT_STORE(st)                                                                \
  do {                                                                                   \
    if constexpr (kHalf) {                                                               \
      LORA_UNROLL                                                                        \
      for (int q = 0; q < LORA_MT_HQ; ++q) {                                             \
        float v_[8];                                                                     \
        if constexpr (kNF4)                                                              \
          lora_unpack8_nf4(rh[st][q], tab, v_);                                          \
        else                                                                             \
          lora_unpack8<DT>(rh[st][q], v_);                                               \
        LORA_UNROLL                                                                      \
        for (int e = 0; e < 8; ++e)                                                      \
          sb[hk + e][sc + q * (LORA_MT_THREADS / 4)] = v_[e];                              \
      }                                                                                  \
    } else {                                                                             \
      LORA_UNROLL                                                                        \
      for (int q = 0; q < LORA_MT_VQ; ++q) {                                             \
        LORA_UNROLL                                                                      \
        for (int e = 0; e < 4; ++e)                                                      \
          sb[lk + e][sc + q * (LORA_MT_THREADS / 8)] = rb[st][q][e];                       \
      }                                                                                  \
    }                                                                                    \
    LORA_UNROLL                                                                          \
    for (int q = 0; q < XQ; ++q) {                                                       \
      const int idx = t + q * LORA_MT_THREADS;                                           \
      if (idx < BM * LORA_MT_K / 4) {                                                    \
        LORA_UNROLL                                                                      \
        for (int e = 0; e < 4; ++e) sa[lk + e][idx >> 3] = ra[st][q][e];                 \
      }                                                                                  \
    }                                                                                    \
  } while (0)

#define LORA_MT_MMA()                                                                    \
  do {                                                                                   \
    LORA_UNROLL                                                                          \
    for (int kk = 0; kk < LORA_MT_K; ++kk) {                                             \
      const float4 b0 = *reinterpret_cast<const float4*>(&sb[kk][(tx * 4) ^ swz(kk)]);   \
      const float4 b1 = *reinterpret_cast<const float4*>(&sb[kk][64 + ((tx * 4) ^ swz(kk))]); \
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};               \
      LORA_UNROLL                                                                        \
      for (int i = 0; i < TM; ++i) {                                                     \
        const float a = sa[kk][ty * TM + i];                                             \
        LORA_UNROLL                                                                      \
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a, b[j], acc[i][j]);                \
      }                                                                                  \
    }                                                                                    \
  } while (0)

  if (kStages == 1) {  // one step in flight: the 64-row tile has no registers to spare
    if (kt0 < kt1) LORA_MT_FETCH(kt0, 0);
    for (int kt = kt0; kt < kt1; ++kt) {
      LORA_MT_STORE(0);
      __syncthreads();
      if (kt + 1 < kt1) LORA_MT_FETCH(kt + 1, 0);
      LORA_MT_MMA();
      __syncthreads();
    }
  } else {
  if (kt0 < kt1) LORA_MT_FETCH(kt0, 0);
  if (kt0 + 1 < kt1) LORA_MT_FETCH(kt0 + 1, 1);
  for (int kt = kt0; kt < kt1; kt += 2) {
    LORA_MT_STORE(0);
    __syncthreads();
    if (kt + 2 < kt1) LORA_MT_FETCH(kt + 2, 0);
    LORA_MT_MMA();
    __syncthreads();  // before the next step overwrites sa and sb
    if (kt + 1 >= kt1) break;
    LORA_MT_STORE(1);
    __syncthreads();
    if (kt + 3 < kt1) LORA_MT_FETCH(kt + 3, 1);
    LORA_MT_MMA();
    __syncthreads();
  }
  }
#undef LORA_MT_STORE
#undef LORA_MT_MMA
#undef LORA_MT_FETCH

  float* p = P + static_cast<long long>(blockIdx.z) * n * rows;
  LORA_UNROLL
  for (int i = 0; i < TM; ++i) {
    const int row = m0 + ty * TM + i;
    if (row >= n) continue;
    float* pr = p + static_cast<long long>(row) * rows;
    LORA_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int col = n0 + h * 64 + tx * 4;
      LORA_UNROLL
      for (int e = 0; e < 4; ++e)
        if (col + e < jend) pr[col + e] = acc[i][h * 4 + e];
    }
  }
}

// Blocks with blockIdx.y < ceil(out / LORA_MT_N) take tiles of W's rows, the
// others tiles of A's, so that a tile's rows are all of one type.
template <int BM, int DT>
__device__ __forceinline__ void lora_forward_mtile_impl(const float* __restrict__ x,
                                                        const typename lora_elem<DT>::type* __restrict__ W,
                                                        const float* __restrict__ A,
                                                        float* __restrict__ P, int n, int in,
                                                        int out, int r,
                                                        const float* __restrict__ absmax = nullptr,
                                                        int block = 0) {
  // One copy of the tiles for both sources. The tile of x is stored
  // transposed, a thread's 4 elements down a column: rows of BM + 1 floats
  // put the 32 threads of a warp in 32 banks.
  __shared__ __align__(16) float sa[LORA_MT_K][BM + 1];
  __shared__ __align__(16) float sb[LORA_MT_K][LORA_MT_N + 4];
  if (blockDim.x != LORA_MT_THREADS) return;  // the tiling needs this exact block
  const int wtiles = (out + LORA_MT_N - 1) / LORA_MT_N;
  const int by = blockIdx.y;
  if constexpr (DT == LORA_NF4) {
    __shared__ float tab[16];
    const int sh = lora_nf4_log2(block);
    if (sh < 3) return;  // not a power of two of at least 8: nothing written
    lora_nf4_fill(tab);
    __syncthreads();
    if (by < wtiles) {
      lora_forward_mtile<BM, DT>(x, W, P, n, in, out + r, 0, out, by * LORA_MT_N, sa, sb, absmax, sh, tab);
      return;
    }
  } else if (by < wtiles) {
    lora_forward_mtile<BM, DT>(x, W, P, n, in, out + r, 0, out, by * LORA_MT_N, sa, sb);
    return;
  }
  lora_forward_mtile<BM, LORA_F32>(x, A, P, n, in, out + r, out, out + r,
                                   out + (by - wtiles) * LORA_MT_N, sa, sb);
}

#undef LORA_MT_VQ
#undef LORA_MT_HQ

#define LORA_MT_KERNEL(name, BM, DT, WT)                                                      \
  extern "C" __global__ void __launch_bounds__(LORA_MT_THREADS)                               \
      name(const float* __restrict__ x, const WT* __restrict__ W, const float* __restrict__ A, \
           float* __restrict__ P, int n, int in, int out, int r) {                            \
    lora_forward_mtile_impl<BM, DT>(x, lora_bits(W), A, P, n, in, out, r);                    \
  }
LORA_MT_KERNEL(lora_forward_m16, 16, LORA_F32, float)
LORA_MT_KERNEL(lora_forward_m32, 32, LORA_F32, float)
LORA_MT_KERNEL(lora_forward_m64, 64, LORA_F32, float)
LORA_MT_KERNEL(lora_forward_m16_f16, 16, LORA_F16, __half)
LORA_MT_KERNEL(lora_forward_m32_f16, 32, LORA_F16, __half)
LORA_MT_KERNEL(lora_forward_m64_f16, 64, LORA_F16, __half)
LORA_MT_KERNEL(lora_forward_m16_bf16, 16, LORA_BF16, __nv_bfloat16)
LORA_MT_KERNEL(lora_forward_m32_bf16, 32, LORA_BF16, __nv_bfloat16)
LORA_MT_KERNEL(lora_forward_m64_bf16, 64, LORA_BF16, __nv_bfloat16)
#undef LORA_MT_KERNEL

// An NF4 W: its codes, its absmax and its block size (see nf4.cu).
#define LORA_MT_NF4_KERNEL(name, BM)                                                              \
  extern "C" __global__ void __launch_bounds__(LORA_MT_THREADS)                                   \
      name(const float* __restrict__ x, const unsigned char* __restrict__ W,                      \
           const float* __restrict__ absmax, const float* __restrict__ A, float* __restrict__ P,  \
           int n, int in, int out, int r, int block) {                                            \
    lora_forward_mtile_impl<BM, LORA_NF4>(x, W, A, P, n, in, out, r, absmax, block);              \
  }
LORA_MT_NF4_KERNEL(lora_forward_m16_nf4, 16)
LORA_MT_NF4_KERNEL(lora_forward_m32_nf4, 32)
LORA_MT_NF4_KERNEL(lora_forward_m64_nf4, 64)
#undef LORA_MT_NF4_KERNEL

// lora_forward_reduce: thread t of block (bx, by) writes y[i, j] for rows
// i = by, by + gridDim.y, ..., j, j = bx*
// LORA_RED_THREADS + t: the sum of the splits' P[z][i, j] in order, plus s
// times row i of T = sum_z P[z][i, out:] (staged through shared memory,
// LORA_RED_THREADS ranks at a time) dotted with row j of B.
// Global memory: reads P once and B (out x r) once per row i (through the
// cache); writes each element of y once.
// y is of type YT: each element rounded once, at its store.
template <int YT>
__device__ __forceinline__ void lora_forward_reduce_impl(const float* __restrict__ P,
                                                         const float* __restrict__ B,
                                                         typename lora_elem<YT>::type* __restrict__ y,
                                                         int n, int out, int r, int splits, float s) {
  __shared__ float st[LORA_RED_THREADS];
  if (blockDim.x != LORA_RED_THREADS) return;  // the staging needs this exact block
  const int t = threadIdx.x;
  const int j = blockIdx.x * LORA_RED_THREADS + t;
  const int rows = out + r;
  const long long zstride = static_cast<long long>(n) * rows;
  for (int i = blockIdx.y; i < n; i += gridDim.y) {  // the same i for the whole block
    const float* pi = P + static_cast<long long>(i) * rows;
    float lr = 0.0f;  // s * T[i,:] . B[j,:]
    for (int k0 = 0; k0 < r; k0 += LORA_RED_THREADS) {
      if (k0 + t < r) {
        float tk = 0.0f;
        for (int z = 0; z < splits; ++z) tk += pi[z * zstride + out + k0 + t];
        st[t] = s * tk;
      }
      __syncthreads();
      const int kc = lora_min(LORA_RED_THREADS, r - k0);
      if (j < out) {
        const float* br = B + static_cast<long long>(j) * r + k0;
        for (int k = 0; k < kc; ++k) lr = fmaf(st[k], __ldg(br + k), lr);
      }
      __syncthreads();
    }
    if (j < out) {
      float v = 0.0f;
      for (int z = 0; z < splits; ++z) v += pi[z * zstride + j];
      lora_store1<YT>(y, static_cast<long long>(i) * out + j, v + lr);
    }
  }
}

extern "C" __global__ void __launch_bounds__(LORA_RED_THREADS)
    lora_forward_reduce(const float* __restrict__ P, const float* __restrict__ B,
                        float* __restrict__ y, int n, int out, int r, int splits, float s) {
  lora_forward_reduce_impl<LORA_F32>(P, B, y, n, out, r, splits, s);
}

extern "C" __global__ void __launch_bounds__(LORA_RED_THREADS)
    lora_forward_reduce_f16(const float* __restrict__ P, const float* __restrict__ B,
                            __half* __restrict__ y, int n, int out, int r, int splits, float s) {
  lora_forward_reduce_impl<LORA_F16>(P, B, lora_bits(y), n, out, r, splits, s);
}

extern "C" __global__ void __launch_bounds__(LORA_RED_THREADS)
    lora_forward_reduce_bf16(const float* __restrict__ P, const float* __restrict__ B,
                             __nv_bfloat16* __restrict__ y, int n, int out, int r, int splits,
                             float s) {
  lora_forward_reduce_impl<LORA_BF16>(P, B, lora_bits(y), n, out, r, splits, s);
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_forward_m16)
LORA_EMU_REGISTER(lora_forward_m32)
LORA_EMU_REGISTER(lora_forward_m64)
LORA_EMU_REGISTER(lora_forward_reduce)
LORA_EMU_REGISTER(lora_forward_reduce_f16)
LORA_EMU_REGISTER(lora_forward_reduce_bf16)
LORA_EMU_REGISTER(lora_forward_m16_f16)
LORA_EMU_REGISTER(lora_forward_m32_f16)
LORA_EMU_REGISTER(lora_forward_m64_f16)
LORA_EMU_REGISTER(lora_forward_m16_bf16)
LORA_EMU_REGISTER(lora_forward_m32_bf16)
LORA_EMU_REGISTER(lora_forward_m64_bf16)
LORA_EMU_REGISTER(lora_forward_m16_nf4)
LORA_EMU_REGISTER(lora_forward_m32_nf4)
LORA_EMU_REGISTER(lora_forward_m64_nf4)
#endif
