// finite.cu: *flag = 1 if any of p[0 .. count) is NaN, +Inf or -Inf.
//
// A float is not finite exactly when its exponent bits are all ones. Each
// thread ORs that test over a grid-stride sweep (float4 loads when p is
// 16-byte aligned, then the scalar tail), the block combines its threads'
// results with __syncthreads_or, and thread 0 of a block that found one writes 1.
// The host zeroes *flag before the launch; the kernel never writes 0.
//
// Global memory: reads p (count floats) once; writes *flag at most once per
// block. No shared memory.
#include "common.cuh"

#define LORA_EXP_MASK 0x7f800000u

extern "C" __global__ void __launch_bounds__(LORA_FINITE_THREADS)
    lora_finite(const float* __restrict__ p, long long count, int* __restrict__ flag) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned bad = 0;
  long long tail = 0;
  if (lora_aligned16(p)) {
    const long long count4 = count >> 2;
    const float4* p4 = reinterpret_cast<const float4*>(p);
    for (long long i = first; i < count4; i += stride) {
      const float4 v = __ldg(p4 + i);
      bad |= (__float_as_uint(v.x) & LORA_EXP_MASK) == LORA_EXP_MASK;
      bad |= (__float_as_uint(v.y) & LORA_EXP_MASK) == LORA_EXP_MASK;
      bad |= (__float_as_uint(v.z) & LORA_EXP_MASK) == LORA_EXP_MASK;
      bad |= (__float_as_uint(v.w) & LORA_EXP_MASK) == LORA_EXP_MASK;
    }
    tail = count4 << 2;
  }
  for (long long i = tail + first; i < count; i += stride)
    bad |= (__float_as_uint(__ldg(p + i)) & LORA_EXP_MASK) == LORA_EXP_MASK;

  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

#undef LORA_EXP_MASK

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_finite)
#endif
