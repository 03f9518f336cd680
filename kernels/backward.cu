// backward.cu: the rank-r parts of the backward pass, U = s * dy * B and the
// two reductions over the batch that give the adapter's gradients.
//
// With T = s * x * A^T (lora_shrink) and U = s * dy * B (lora_grad_u), both
// n x r:
//   dB = dy^T * T   (out x r)   lora_grad_ab(dy, T, dB, n, out, r, 0)
//   dA = U^T * x    (r x in)    lora_grad_ab(x, U, dA, n, in, r, 1)
// fp32 accumulation throughout, each sum in a fixed order, so that results do
// not depend on the launch or on other calls.
#include "common.cuh"

// lora_grad_u: U[i,k] = s * sum_j dy[i,j] * B[j,k].
//
// Block (bx, by) computes rows i0 = bx*LORA_GRADU_ROWS ... +LORA_GRADU_ROWS-1
// and columns k0 = by*LORA_GRADU_KS ... +LORA_GRADU_KS-1 of U; warp w owns
// column k = k0 + w. The lanes of a warp stride along `out`: the rows of dy
// are read coalesced (float4 when out % 4 == 0 and dy is 16-byte aligned) and
// shared by the block's warps through the read-only cache; column k of B is
// read with stride r, and the block's warps together use every byte of each
// row segment B[j, k0 .. k0+7] they fetch. Each lane's partial sums are
// reduced through shared memory.
//
// Global memory: reads dy (n x out) once per column block and B (out x r);
// writes each element of U (n x r) exactly once. Shared memory:
// LORA_GRADU_KS*LORA_GRADU_ROWS*33 floats (static).
extern "C" __global__ void __launch_bounds__(LORA_GRADU_THREADS)
    lora_grad_u(const float* __restrict__ dy, const float* __restrict__ B, float* __restrict__ U,
                int n, int out, int r, float s) {
  __shared__ float part[LORA_GRADU_KS][LORA_GRADU_ROWS][LORA_WARP_SIZE + 1];
  if (blockDim.x != LORA_GRADU_THREADS) return;  // the tiling needs this exact block

  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int i0 = blockIdx.x * LORA_GRADU_ROWS;
  const int k = blockIdx.y * LORA_GRADU_KS + warp;
  if (k >= r || i0 >= n) return;  // the whole warp leaves together

  float acc[LORA_GRADU_ROWS];
  const float* yr[LORA_GRADU_ROWS];
  LORA_UNROLL
  for (int q = 0; q < LORA_GRADU_ROWS; ++q) {
    acc[q] = 0.0f;
    yr[q] = dy + static_cast<long long>(lora_min(i0 + q, n - 1)) * out;
  }
  const float* b = B + k;
  if ((out & 3) == 0 && lora_aligned16(dy)) {
    const int out4 = out >> 2;
    for (int c = lane; c < out4; c += LORA_WARP_SIZE) {
      const long long j = 4LL * c;
      const float4 bv = make_float4(__ldg(b + j * r), __ldg(b + (j + 1) * r),
                                    __ldg(b + (j + 2) * r), __ldg(b + (j + 3) * r));
      LORA_UNROLL
      for (int q = 0; q < LORA_GRADU_ROWS; ++q) {
        const float4 yv = __ldg(reinterpret_cast<const float4*>(yr[q]) + c);
        acc[q] = lora_dot4(yv, bv, acc[q]);
      }
    }
  } else {
    for (int j = lane; j < out; j += LORA_WARP_SIZE) {
      const float bv = __ldg(b + static_cast<long long>(j) * r);
      LORA_UNROLL
      for (int q = 0; q < LORA_GRADU_ROWS; ++q) acc[q] = fmaf(__ldg(yr[q] + j), bv, acc[q]);
    }
  }

  LORA_UNROLL
  for (int q = 0; q < LORA_GRADU_ROWS; ++q) part[warp][q][lane] = acc[q];
  __syncwarp();

  if (lane < LORA_GRADU_ROWS && i0 + lane < n) {
    float sum = 0.0f;
    LORA_UNROLL
    for (int l = 0; l < LORA_WARP_SIZE; ++l) sum += part[warp][lane][l];
    U[static_cast<long long>(i0 + lane) * r + k] = s * sum;
  }
}

#define LORA_GRADAB_KPT (LORA_GRADAB_TR / (LORA_GRADAB_THREADS / LORA_GRADAB_TP))

static_assert(LORA_GRADAB_KPT * (LORA_GRADAB_THREADS / LORA_GRADAB_TP) == LORA_GRADAB_TR,
              "the threads of a block split its LORA_GRADAB_TR columns evenly");
static_assert((LORA_GRADAB_TN * LORA_GRADAB_TP) % LORA_GRADAB_THREADS == 0 &&
                  (LORA_GRADAB_TN * LORA_GRADAB_TR) % LORA_GRADAB_THREADS == 0,
              "staging loads divide evenly among the threads");
static_assert(LORA_GRADAB_TP == LORA_WARP_SIZE, "a warp covers the block's rows p");

// lora_grad_ab: C = G^T * H, C[p,k] = sum_i G[i,p] * H[i,k], for G (n x P)
// and H (n x r); C is stored P x r (trans == 0) or r x P (trans != 0).
//
// Block (bx, by) owns rows p0 = bx*LORA_GRADAB_TP ... of C^T's P dimension
// and columns k0 = by*LORA_GRADAB_TR ... of r. It walks the batch in chunks
// of LORA_GRADAB_TN rows: the chunk's G[i, p0 .. p0+TP) (coalesced along p)
// and H[i, k0 .. k0+TR) go to shared memory, then thread t, owning p = p0 +
// t % TP and LORA_GRADAB_KPT consecutive k, accumulates over the chunk in
// ascending i. Out-of-range rows and columns load zeros and are not stored.
//
// Global memory: reads G (n x P) once per column block of r and H (n x r)
// once per block; writes each element of C exactly once. Shared memory:
// LORA_GRADAB_TN*(LORA_GRADAB_TP + LORA_GRADAB_TR) floats (static).
extern "C" __global__ void __launch_bounds__(LORA_GRADAB_THREADS)
    lora_grad_ab(const float* __restrict__ G, const float* __restrict__ H, float* __restrict__ C,
                 int n, int p, int r, int trans) {
  __shared__ float sg[LORA_GRADAB_TN][LORA_GRADAB_TP];
  __shared__ float sh[LORA_GRADAB_TN][LORA_GRADAB_TR];
  if (blockDim.x != LORA_GRADAB_THREADS) return;  // the tiling needs this exact block

  const int t = threadIdx.x;
  const int q = t % LORA_GRADAB_TP;
  const int kq = (t / LORA_GRADAB_TP) * LORA_GRADAB_KPT;
  const int p0 = blockIdx.x * LORA_GRADAB_TP;
  const int k0 = blockIdx.y * LORA_GRADAB_TR;

  float acc[LORA_GRADAB_KPT];
  LORA_UNROLL
  for (int e = 0; e < LORA_GRADAB_KPT; ++e) acc[e] = 0.0f;

  for (int i0 = 0; i0 < n; i0 += LORA_GRADAB_TN) {
    LORA_UNROLL
    for (int e = 0; e < LORA_GRADAB_TN * LORA_GRADAB_TP / LORA_GRADAB_THREADS; ++e) {
      const int idx = t + e * LORA_GRADAB_THREADS;
      const int ii = idx / LORA_GRADAB_TP;
      const int pp = idx % LORA_GRADAB_TP;
      const int i = i0 + ii;
      sg[ii][pp] = (i < n && p0 + pp < p) ? __ldg(G + static_cast<long long>(i) * p + p0 + pp) : 0.0f;
    }
    LORA_UNROLL
    for (int e = 0; e < LORA_GRADAB_TN * LORA_GRADAB_TR / LORA_GRADAB_THREADS; ++e) {
      const int idx = t + e * LORA_GRADAB_THREADS;
      const int ii = idx / LORA_GRADAB_TR;
      const int kk = idx % LORA_GRADAB_TR;
      const int i = i0 + ii;
      sh[ii][kk] = (i < n && k0 + kk < r) ? __ldg(H + static_cast<long long>(i) * r + k0 + kk) : 0.0f;
    }
    __syncthreads();

    const int rows = lora_min(LORA_GRADAB_TN, n - i0);
    for (int ii = 0; ii < rows; ++ii) {
      const float g = sg[ii][q];
      LORA_UNROLL
      for (int e = 0; e < LORA_GRADAB_KPT; ++e) acc[e] = fmaf(g, sh[ii][kq + e], acc[e]);
    }
    __syncthreads();
  }

  const int pc = p0 + q;
  if (pc >= p) return;
  LORA_UNROLL
  for (int e = 0; e < LORA_GRADAB_KPT; ++e) {
    const int k = k0 + kq + e;
    if (k >= r) continue;
    if (trans)
      C[static_cast<long long>(k) * p + pc] = acc[e];
    else
      C[static_cast<long long>(pc) * r + k] = acc[e];
  }
}

#undef LORA_GRADAB_KPT

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_grad_u)
LORA_EMU_REGISTER(lora_grad_ab)
#endif
