// backward_mtile.cu: dx = dy * W + U * A with small-M tiles and a split of
// the inner dimension, for 17 <= n where 128 x 128 tiles would leave the GPU
// idle or pad most of their rows: the m-tiles of forward_mtile.cu with W not
// transposed.
//
// P[z][i,c] = sum over the K-steps of split z of [dy | U][i,k] * [W ; A][k,c],
// fp32 accumulation: one product over the concatenated inner dimension of
// out + r elements, the rank term folded in as A's rows below W's (U = s *
// dy * B is Backward's, which dA needs too). The K-steps of LORA_MT_K
// elements walk dy/W (ceil(out / LORA_MT_K) steps, the last zero-filled past
// out), then U/A (ceil(r / LORA_MT_K), none when r == 0; U and A may then be
// null: dy * W alone, the input gradient of a merged layer). With one split
// (gridDim.z == 1) P is dx itself; otherwise lora_forward_reduce (r = 0)
// sums the splits in order into dx.
//
// Block (bx, by, z) computes the BM x LORA_MT_N tile of P[z] at rows m0 =
// bx*BM of dy, columns c0 = by*LORA_MT_N, over K-steps [z*per, min(steps,
// (z+1)*per)), per = ceil(steps / gridDim.z). Per K-step, thread t loads:
//   - BM*8/256 float4 of dy (or U): row m0 + idx/8, inner elements
//     (idx%8)*4 .. +3, idx = t + 256q, stored K-major (transposed) as
//     lora_forward_m* stores x;
//   - a float32 right operand (W, A), 32 rows x 128 columns: 4 float4, row
//     t/32 + 8q, columns c0 + (t%32)*4 .. +3, stored as they are (a warp
//     writes one 512-byte row of the tile);
//   - a 16-bit W: 2 vectors of 8 elements, row t/16 + 16q, columns c0 +
//     (t%16)*8 .. +7, kept as bits and widened as they are stored;
//   - an NF4 W (lora_grad_x_m*_nf4, its absmax after its codes and its
//     block size last): the same runs of 8 as their codes and absmax
//     (lora_fetch8_nf4, one 32-bit load where in % 8 == 0), dequantized as
//     they are stored (see nf4.cu).
// 16-byte loads where the row length is a multiple of 4 (8 for a 16-bit W)
// and the pointers are aligned, element loads otherwise; zeros past every
// edge. The loads of steps k+1 and k+2 are in flight in two register stages
// while step k is multiplied out of shared memory (one stage for BM = 64, as
// lora_forward_m64): 2*LORA_MT_K*LORA_MT_N*4 = 32 KB of a float32 W per block,
// 16 KB of a 16-bit one.
// Thread (ty, tx) = (t/16, t%16) accumulates a (BM/16) x 8 register tile:
// rows m0 + ty*BM/16 .., columns c0 + tx*4 .. +3 and c0 + 64 + tx*4 .. +3.
//
// Global memory: reads dy, U (n x .) and W, A (. x in) tile by tile (W once
// per M-tile, which run side by side and share it through L2); writes each
// element of P[z] (n x in) once, never reads it. Shared memory:
// LORA_MT_K*(BM+1) + LORA_MT_K*(LORA_MT_N+4) floats (static), as
// lora_forward_m*, and for an NF4 W the 16 floats of its table.
#include "tile.cuh"

static_assert(LORA_MT_THREADS == 256 && LORA_MT_N == 128 && LORA_MT_K == 32,
              "lora_grad_x_m*: 16 x 16 threads, 4 float4 of a float32 right operand per K-step");

template <int BM, int DT>
__device__ __forceinline__ void lora_grad_x_mtile(const float* __restrict__ dy,
                                                  const typename lora_elem<DT>::type* __restrict__ W,
                                                  const float* __restrict__ U,
                                                  const float* __restrict__ A,
                                                  float* __restrict__ P, int n, int in, int out,
                                                  int r, const float* __restrict__ absmax = nullptr,
                                                  int block = 0) {
  constexpr int TM = BM / 16;
  constexpr int XQ = (BM * LORA_MT_K / 4 + LORA_MT_THREADS - 1) / LORA_MT_THREADS;
  constexpr bool kNF4 = DT == LORA_NF4;
  constexpr bool kHalf = DT != LORA_F32;  // W loaded in runs of 8 elements
  constexpr int kStages = BM == 64 ? 1 : 2;
  // The left operand's tile is stored transposed, a thread's 4 elements
  // down a column: rows of BM + 1 floats put the 32 threads of a warp in 32
  // banks.
  __shared__ __align__(16) float sa[LORA_MT_K][BM + 1];
  __shared__ __align__(16) float sb[LORA_MT_K][LORA_MT_N + 4];
  if (blockDim.x != LORA_MT_THREADS) return;  // the tiling needs this exact block
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

  const int t = threadIdx.x;
  const int m0 = blockIdx.x * BM;
  const int c0 = blockIdx.y * LORA_MT_N;
  const int steps_w = (out + LORA_MT_K - 1) / LORA_MT_K;
  const int steps = steps_w + (r > 0 ? (r + LORA_MT_K - 1) / LORA_MT_K : 0);
  const int per = (steps + static_cast<int>(gridDim.z) - 1) / static_cast<int>(gridDim.z);
  const int kt0 = lora_min(steps, static_cast<int>(blockIdx.z) * per);
  const int kt1 = lora_min(steps, kt0 + per);

  const bool vec_dy = (out & 3) == 0 && lora_aligned16(dy);
  const bool vec_u = r > 0 && (r & 3) == 0 && lora_aligned16(U);
  const bool vec_a = r > 0 && (in & 3) == 0 && lora_aligned16(A);
  // An NF4 W: 32-bit words of codes.
  const bool vec_w = kNF4    ? (in & 7) == 0 && (reinterpret_cast<uintptr_t>(W) & 3u) == 0
                     : kHalf ? (in & 7) == 0 && lora_aligned16(W)
                             : (in & 3) == 0 && lora_aligned16(W);
  // Left operand: float4 slot (row, k) = (idx/8, (idx%8)*4).
  const int lk = (t & 7) * 4;
  // Right operand: float32 rows t/32 + 8q at column fc; 16-bit and NF4 rows
  // t/16 + 16q at column hc.
  const int fk = t >> 5, fc = (t & 31) * 4;
  const int hk = t >> 4, hc = (t & 15) * 8;

  // A stage: the left operand's float4, and the right operand's bits: four
  // float4 of a float32 row (W or A), or two runs of eight 16-bit elements
  // (or of eight NF4 codes, lora_fetch8_nf4's uint4) of W.
  float ra0[XQ][4], ra1[XQ][4];
  unsigned rb0[16], rb1[16];
  (void)ra1;
  (void)rb1;

  const int ty = t / 16;
  const int tx = t % 16;
  float acc[TM][8];
  LORA_UNROLL
  for (int i = 0; i < TM; ++i) {
    LORA_UNROLL
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
  }

  auto fetch = [&](int kt, float(&ra)[XQ][4], unsigned(&rb)[16]) {
    const bool w = kt < steps_w;  // a step of dy/W, else of U/A
    const int k0 = (w ? kt : kt - steps_w) * LORA_MT_K;
    const float* L = w ? dy : U;
    const int ll = w ? out : r;  // the left operand's row length
    const bool lvec = w ? vec_dy : vec_u;
    LORA_UNROLL
    for (int q = 0; q < XQ; ++q) {
      const int idx = t + q * LORA_MT_THREADS;
      if (idx < BM * LORA_MT_K / 4)
        lora_tile_fetch(L, ll, m0 + (idx >> 3), m0 + (idx >> 3) < n, k0 + lk, ll, lvec, ra[q]);
    }
    if constexpr (kHalf) {
      if (w) {
        LORA_UNROLL
        for (int q = 0; q < 2; ++q) {
          const int k = k0 + hk + 16 * q;
          const long long at = static_cast<long long>(lora_min(k, out - 1)) * in + c0 + hc;
          uint4 v;
          if constexpr (kNF4)
            v = lora_fetch8_nf4(W, absmax, sh, at, k < out, in - (c0 + hc), vec_w);
          else
            v = lora_fetch8_bits_at(W + at, k < out, in - (c0 + hc), vec_w);
          rb[4 * q] = v.x;
          rb[4 * q + 1] = v.y;
          rb[4 * q + 2] = v.z;
          rb[4 * q + 3] = v.w;
        }
        return;
      }
    }
    {
      const float* S = A;
      int rows = r;
      bool svec = vec_a;
      if constexpr (!kHalf) {
        if (w) S = W, rows = out, svec = vec_w;
      }
      LORA_UNROLL
      for (int q = 0; q < 4; ++q) {
        const int k = k0 + fk + 8 * q;
        float v[4];
        lora_fetch4_at(S + static_cast<long long>(lora_min(k, rows - 1)) * in + c0 + fc, k < rows,
                       in - (c0 + fc), svec, v);
        LORA_UNROLL
        for (int e = 0; e < 4; ++e) rb[4 * q + e] = __float_as_uint(v[e]);
      }
    }
  };
  auto store = [&](int kt, const float(&ra)[XQ][4], const unsigned(&rb)[16]) {
    LORA_UNROLL
    for (int q = 0; q < XQ; ++q) {
      const int idx = t + q * LORA_MT_THREADS;
      if (idx < BM * LORA_MT_K / 4) {
        LORA_UNROLL
        for (int e = 0; e < 4; ++e) sa[lk + e][idx >> 3] = ra[q][e];
      }
    }
    if (kHalf && kt < steps_w) {
      LORA_UNROLL
      for (int q = 0; q < 2; ++q) {
        float v[8];
        const uint4 b = make_uint4(rb[4 * q], rb[4 * q + 1], rb[4 * q + 2], rb[4 * q + 3]);
        if constexpr (kNF4)
          lora_unpack8_nf4(b, tab, v);
        else
          lora_unpack8<kHalf ? DT : LORA_F16>(b, v);
        *reinterpret_cast<float4*>(&sb[hk + 16 * q][hc]) = make_float4(v[0], v[1], v[2], v[3]);
        *reinterpret_cast<float4*>(&sb[hk + 16 * q][hc + 4]) = make_float4(v[4], v[5], v[6], v[7]);
      }
    } else {
      LORA_UNROLL
      for (int q = 0; q < 4; ++q)
        *reinterpret_cast<float4*>(&sb[fk + 8 * q][fc]) =
            make_float4(__uint_as_float(rb[4 * q]), __uint_as_float(rb[4 * q + 1]),
                        __uint_as_float(rb[4 * q + 2]), __uint_as_float(rb[4 * q + 3]));
    }
  };
  auto mma = [&]() {
    LORA_UNROLL
    for (int kk = 0; kk < LORA_MT_K; ++kk) {
      const float4 b0 = *reinterpret_cast<const float4*>(&sb[kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&sb[kk][64 + tx * 4]);
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
      LORA_UNROLL
      for (int i = 0; i < TM; ++i) {
        const float a = sa[kk][ty * TM + i];
        LORA_UNROLL
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a, b[j], acc[i][j]);
      }
    }
  };

  if constexpr (kStages == 1) {  // one step in flight: the 64-row tile has no registers to spare
    if (kt0 < kt1) fetch(kt0, ra0, rb0);
    for (int kt = kt0; kt < kt1; ++kt) {
      store(kt, ra0, rb0);
      __syncthreads();
      if (kt + 1 < kt1) fetch(kt + 1, ra0, rb0);
      mma();
      __syncthreads();  // before the next step overwrites sa and sb
    }
  } else {
    if (kt0 < kt1) fetch(kt0, ra0, rb0);
    if (kt0 + 1 < kt1) fetch(kt0 + 1, ra1, rb1);
    for (int kt = kt0; kt < kt1; kt += 2) {
      store(kt, ra0, rb0);
      __syncthreads();
      if (kt + 2 < kt1) fetch(kt + 2, ra0, rb0);
      mma();
      __syncthreads();
      if (kt + 1 >= kt1) break;
      store(kt + 1, ra1, rb1);
      __syncthreads();
      if (kt + 3 < kt1) fetch(kt + 3, ra1, rb1);
      mma();
      __syncthreads();
    }
  }

  float* p = P + static_cast<long long>(blockIdx.z) * n * in;
  LORA_UNROLL
  for (int i = 0; i < TM; ++i) {
    const int row = m0 + ty * TM + i;
    if (row >= n) continue;
    float* pr = p + static_cast<long long>(row) * in;
    LORA_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int col = c0 + h * 64 + tx * 4;
      LORA_UNROLL
      for (int e = 0; e < 4; ++e)
        if (col + e < in) pr[col + e] = acc[i][h * 4 + e];
    }
  }
}

#define LORA_GXM_KERNEL(name, BM, DT, WT)                                                       \
  extern "C" __global__ void __launch_bounds__(LORA_MT_THREADS)                                 \
      name(const float* __restrict__ dy, const WT* __restrict__ W, const float* __restrict__ U, \
           const float* __restrict__ A, float* __restrict__ P, int n, int in, int out, int r) { \
    lora_grad_x_mtile<BM, DT>(dy, lora_bits(W), U, A, P, n, in, out, r);                       \
  }
LORA_GXM_KERNEL(lora_grad_x_m16, 16, LORA_F32, float)
LORA_GXM_KERNEL(lora_grad_x_m32, 32, LORA_F32, float)
LORA_GXM_KERNEL(lora_grad_x_m64, 64, LORA_F32, float)
LORA_GXM_KERNEL(lora_grad_x_m16_f16, 16, LORA_F16, __half)
LORA_GXM_KERNEL(lora_grad_x_m32_f16, 32, LORA_F16, __half)
LORA_GXM_KERNEL(lora_grad_x_m64_f16, 64, LORA_F16, __half)
LORA_GXM_KERNEL(lora_grad_x_m16_bf16, 16, LORA_BF16, __nv_bfloat16)
LORA_GXM_KERNEL(lora_grad_x_m32_bf16, 32, LORA_BF16, __nv_bfloat16)
LORA_GXM_KERNEL(lora_grad_x_m64_bf16, 64, LORA_BF16, __nv_bfloat16)
#undef LORA_GXM_KERNEL

// An NF4 W: its codes, its absmax and its block size (see nf4.cu).
#define LORA_GXM_NF4_KERNEL(name, BM)                                                            \
  extern "C" __global__ void __launch_bounds__(LORA_MT_THREADS)                                  \
      name(const float* __restrict__ dy, const unsigned char* __restrict__ W,                    \
           const float* __restrict__ absmax, const float* __restrict__ U,                        \
           const float* __restrict__ A, float* __restrict__ P, int n, int in, int out, int r,    \
           int block) {                                                                          \
    lora_grad_x_mtile<BM, LORA_NF4>(dy, W, U, A, P, n, in, out, r, absmax, block);               \
  }
LORA_GXM_NF4_KERNEL(lora_grad_x_m16_nf4, 16)
LORA_GXM_NF4_KERNEL(lora_grad_x_m32_nf4, 32)
LORA_GXM_NF4_KERNEL(lora_grad_x_m64_nf4, 64)
#undef LORA_GXM_NF4_KERNEL

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_grad_x_m16)
LORA_EMU_REGISTER(lora_grad_x_m32)
LORA_EMU_REGISTER(lora_grad_x_m64)
LORA_EMU_REGISTER(lora_grad_x_m16_f16)
LORA_EMU_REGISTER(lora_grad_x_m32_f16)
LORA_EMU_REGISTER(lora_grad_x_m64_f16)
LORA_EMU_REGISTER(lora_grad_x_m16_bf16)
LORA_EMU_REGISTER(lora_grad_x_m32_bf16)
LORA_EMU_REGISTER(lora_grad_x_m64_bf16)
LORA_EMU_REGISTER(lora_grad_x_m16_nf4)
LORA_EMU_REGISTER(lora_grad_x_m32_nf4)
LORA_EMU_REGISTER(lora_grad_x_m64_nf4)
#endif
