// shrink.cu: T = s * x * A^T, the n x r projection onto the adapter's rank,
// x float32 (lora_shrink) or 16-bit (lora_shrink_f16, lora_shrink_bf16: four
// elements in one 8-byte load where float32 takes a float4).
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

// x[c*4 .. c*4+3] of a row of x of type XT, widened: a float4, or four
// 16-bit elements in one 8-byte load.
template <int XT>
__device__ __forceinline__ float4 lora_shrink_x4(const typename lora_elem<XT>::type* xr, int c) {
  if constexpr (XT == LORA_F32) {
    return __ldg(reinterpret_cast<const float4*>(xr) + c);
  } else {
    const uint2 q = __ldg(reinterpret_cast<const uint2*>(xr) + c);
    return make_float4(lora_lo<XT>(q.x), lora_hi<XT>(q.x), lora_lo<XT>(q.y), lora_hi<XT>(q.y));
  }
}

template <bool VEC, int XT>
__device__ __forceinline__ void lora_shrink_dot(const typename lora_elem<XT>::type* __restrict__ x,
                                                const float* __restrict__ a, int in, int n,
                                                int i0, int lane,
                                                float (&acc)[LORA_SHRINK_ROWS]) {
  const typename lora_elem<XT>::type* xr[LORA_SHRINK_ROWS];
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
        const float4 xv = lora_shrink_x4<XT>(xr[q], c);
        acc[q] = lora_dot4(xv, av, acc[q]);
      }
    }
  } else {
    for (int c = lane; c < in; c += LORA_WARP_SIZE) {
      const float av = __ldg(a + c);
      LORA_UNROLL
      for (int q = 0; q < LORA_SHRINK_ROWS; ++q) acc[q] = fmaf(lora_load1<XT>(xr[q], c), av, acc[q]);
    }
  }
}

// x of type XT (16-bit for the tensor-core forward, whose x is in W's type).
template <int XT>
__device__ __forceinline__ void lora_shrink_impl(const typename lora_elem<XT>::type* __restrict__ x,
                                                 const float* __restrict__ A, float* __restrict__ T,
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
    lora_shrink_dot<true, XT>(x, a, in, n, i0, lane, acc);
  else
    lora_shrink_dot<false, XT>(x, a, in, n, i0, lane, acc);

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

extern "C" __global__ void __launch_bounds__(LORA_SHRINK_THREADS)
    lora_shrink(const float* __restrict__ x, const float* __restrict__ A, float* __restrict__ T,
                int n, int in, int r, float s) {
  lora_shrink_impl<LORA_F32>(x, A, T, n, in, r, s);
}

extern "C" __global__ void __launch_bounds__(LORA_SHRINK_THREADS)
    lora_shrink_f16(const __half* __restrict__ x, const float* __restrict__ A,
                    float* __restrict__ T, int n, int in, int r, float s) {
  lora_shrink_impl<LORA_F16>(lora_bits(x), A, T, n, in, r, s);
}

extern "C" __global__ void __launch_bounds__(LORA_SHRINK_THREADS)
    lora_shrink_bf16(const __nv_bfloat16* __restrict__ x, const float* __restrict__ A,
                     float* __restrict__ T, int n, int in, int r, float s) {
  lora_shrink_impl<LORA_BF16>(lora_bits(x), A, T, n, in, r, s);
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_shrink)
LORA_EMU_REGISTER(lora_shrink_f16)
LORA_EMU_REGISTER(lora_shrink_bf16)
#endif
