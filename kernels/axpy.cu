// axpy.cu: y[i] += alpha * x[i] for i < count.
//
// A grid-stride loop, float4 loads and stores when both pointers are 16-byte
// aligned, then the scalar tail. Global memory: reads x and y once, writes y
// once. No shared memory.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(LORA_AXPY_THREADS)
    lora_axpy(float* __restrict__ y, const float* __restrict__ x, long long count, float alpha) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  long long tail = 0;
  if (lora_aligned16(x) && lora_aligned16(y)) {
    const long long count4 = count >> 2;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (long long i = first; i < count4; i += stride) {
      const float4 a = __ldg(x4 + i);
      float4 b = y4[i];
      b.x = fmaf(alpha, a.x, b.x);
      b.y = fmaf(alpha, a.y, b.y);
      b.z = fmaf(alpha, a.z, b.z);
      b.w = fmaf(alpha, a.w, b.w);
      y4[i] = b;
    }
    tail = count4 << 2;
  }
  for (long long i = tail + first; i < count; i += stride) y[i] = fmaf(alpha, __ldg(x + i), y[i]);
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_axpy)
#endif
