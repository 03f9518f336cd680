// mse.cu: the mean-squared-error loss's sum and gradient.
//
// For e < count: d = y[e] - t[e]; dy[e] = scale * d unless dy is null, and
// partial[b] = the sum of d^2 over the elements of block b. Each thread
// accumulates its grid-stride share in fp32, the warp sums by shuffles, the
// block's warps through shared memory; thread 0 writes the block's sum. The
// host adds partial[0 .. gridDim.x) in double precision and divides by
// count.
//
// Global memory: reads y and t once, writes dy once and one float per
// block. Shared memory: LORA_MSE_THREADS/LORA_WARP_SIZE floats (static).
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(LORA_MSE_THREADS)
    lora_mse(const float* __restrict__ y, const float* __restrict__ t, float* __restrict__ dy,
             long long count, float scale, float* __restrict__ partial) {
  __shared__ float warp_sums[LORA_MSE_THREADS / LORA_WARP_SIZE];
  if (blockDim.x != LORA_MSE_THREADS) return;  // the reduction needs this exact block

  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  float sum = 0.0f;
  for (long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; e < count;
       e += stride) {
    const float d = __ldg(y + e) - __ldg(t + e);
    sum = fmaf(d, d, sum);
    if (dy != nullptr) dy[e] = scale * d;
  }
  sum = lora_warp_sum(sum);
  if (threadIdx.x % LORA_WARP_SIZE == 0) warp_sums[threadIdx.x / LORA_WARP_SIZE] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float block = 0.0f;
    LORA_UNROLL
    for (int w = 0; w < LORA_MSE_THREADS / LORA_WARP_SIZE; ++w) block += warp_sums[w];
    partial[blockIdx.x] = block;
  }
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_mse)
#endif
