// shrink.cu: T = s * x * A^T, the n x r projection onto the adapter's rank.
//
// T[i,k] = s * sum_j x[i,j] * A[k,j], fp32 accumulation.
//
// Block (bx, by) computes rows i0 = bx*LORA_SHRINK_ROWS ... +LORA_SHRINK_ROWS-1
// and columns k0 = by*LORA_SHRINK_KS ... +LORA_SHRINK_KS-1 of T; warp w owns
// column k = k0 + w. The lanes of a warp stride along `in`: row k of A is read
// once per block, coalesced, and reused from registers for all the block's
// rows of x; the rows of x are shared by the block's warps through the
// read-only cache. float4 loads when in % 4 == 0 and x, A are 16-byte aligned.
// Each lane's partial sums are reduced through shared memory.
//
// Global memory: reads x (n x in) and A (r x in); writes each element of
// T (n x r) exactly once. Shared memory: LORA_SHRINK_KS*LORA_SHRINK_ROWS*33
// floats (static).
#include "common.cuh"

template <bool VEC>
__device__ __forceinline__ void lora_shrink_dot(const float* __restrict__ x,
                                                const float* __restrict__ a, int in, int n,
                                                int i0, int lane,
                                                float (&acc)[LORA_SHRINK_ROWS]) {
  const float* xr[LORA_SHRINK_ROWS];
  LORA_UNROLL
  for (int q = 0; q < LORA_SHRINK_ROWS; ++q)
    xr[q] = x + static_cast<long long>(lora_min(i0 + q, n - 1)) * in;
  if (VEC) {
    const int in4 = in >> 2;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    for (int c = lane; c < in4; c += LORA_WARP_SIZE) {
      const float4 av = __ldg(a4 + c);
      LORA_UNROLL
      for (int q = 0; q < LORA_SHRINK_ROWS; ++q) {
        const float4 xv = __ldg(reinterpret_cast<const float4*>(xr[q]) + c);
        acc[q] = lora_dot4(xv, av, acc[q]);
      }
    }
  } else {
    for (int c = lane; c < in; c += LORA_WARP_SIZE) {
      const float av = __ldg(a + c);
      LORA_UNROLL
      for (int q = 0; q < LORA_SHRINK_ROWS; ++q) acc[q] = fmaf(__ldg(xr[q] + c), av, acc[q]);
    }
  }
}

extern "C" __global__ void __launch_bounds__(LORA_SHRINK_THREADS)
    lora_shrink(const float* __restrict__ x, const float* __restrict__ A, float* __restrict__ T,
                int n, int in, int r, float s) {
  __shared__ float part[LORA_SHRINK_KS][LORA_SHRINK_ROWS][LORA_WARP_SIZE + 1];
  if (blockDim.x != LORA_SHRINK_THREADS) return;  // the tiling needs this exact block

  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int i0 = blockIdx.x * LORA_SHRINK_ROWS;
  const int k = blockIdx.y * LORA_SHRINK_KS + warp;
  if (k >= r || i0 >= n) return;  // the whole warp leaves together

  float acc[LORA_SHRINK_ROWS];
  LORA_UNROLL
  for (int q = 0; q < LORA_SHRINK_ROWS; ++q) acc[q] = 0.0f;

  const float* a = A + static_cast<long long>(k) * in;
  if ((in & 3) == 0 && lora_aligned16(x) && lora_aligned16(A))
    lora_shrink_dot<true>(x, a, in, n, i0, lane, acc);
  else
    lora_shrink_dot<false>(x, a, in, n, i0, lane, acc);

  LORA_UNROLL
  for (int q = 0; q < LORA_SHRINK_ROWS; ++q) part[warp][q][lane] = acc[q];
  __syncwarp();

  if (lane < LORA_SHRINK_ROWS && i0 + lane < n) {
    float sum = 0.0f;
    LORA_UNROLL
    for (int l = 0; l < LORA_WARP_SIZE; ++l) sum += part[warp][lane][l];
    T[static_cast<long long>(i0 + lane) * r + k] = s * sum;
  }
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_shrink)
#endif
