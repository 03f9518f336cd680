// common.cuh: what every kernel file includes. Under nvcc the CUDA built-ins
// are native; under a plain C++20 compiler emu.h emulates them on the CPU.
#ifndef LORA_COMMON_CUH
#define LORA_COMMON_CUH

#if !defined(__CUDACC__)
#include "emu.h"
#define LORA_UNROLL
#define LORA_NO_UNROLL
#else
#include <stdint.h>
#define LORA_UNROLL _Pragma("unroll")
#define LORA_NO_UNROLL _Pragma("unroll 1")
#define LORA_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

#include "tiles.h"

#define LORA_FULL_MASK 0xffffffffu

static_assert(LORA_SHRINK_KS * LORA_WARP_SIZE == LORA_SHRINK_THREADS, "one warp per column of T");
static_assert(LORA_SMALL_WARPS * LORA_WARP_SIZE == LORA_SMALL_THREADS &&
                  LORA_SMALL_ROWS_PER_BLOCK == LORA_SMALL_WARPS * LORA_SMALL_ROWS_PER_WARP,
              "lora_forward_small: warps and rows per block");

__device__ __forceinline__ int lora_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int lora_max(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ unsigned lora_umax(unsigned a, unsigned b) { return a > b ? a : b; }

// True when p is 16-byte aligned, so that it may be read as float4.
__device__ __forceinline__ bool lora_aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// 1 when v is NaN, +Inf or -Inf (its exponent bits all ones), else 0.
__device__ __forceinline__ unsigned lora_nonfinite(float v) {
  return (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u;
}

// Sum of v over the 32 lanes of a warp; every lane receives the sum.
__device__ __forceinline__ float lora_warp_sum(float v) {
  LORA_UNROLL
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(LORA_FULL_MASK, v, off);
  return v;
}

// Maximum of v over the 32 lanes of a warp; every lane receives it.
__device__ __forceinline__ int lora_warp_max(int v) {
  LORA_UNROLL
  for (int off = 16; off > 0; off >>= 1) {
    int o = __shfl_xor_sync(LORA_FULL_MASK, v, off);
    v = o > v ? o : v;
  }
  return v;
}

__device__ __forceinline__ float lora_dot4(float4 a, float4 b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  acc = fmaf(a.w, b.w, acc);
  return acc;
}

#endif  // LORA_COMMON_CUH
