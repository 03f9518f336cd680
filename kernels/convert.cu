// convert.cu: dst = src rounded to dst's element type, any element types.
//
// dst[i] = round(widen(src[i])) for i < count: src widened exactly to float,
// then rounded to nearest even to dst's type (a finite value beyond its
// range becomes ±Inf, a NaN stays a NaN): one entry point per pair of
// types (lora_convert_f32_bf16, ...), so the loop never tests them. Thread t of block b handles the
// groups of 8 elements g = b*LORA_CONVERT_THREADS + t, + the grid's thread
// count, ...: one 16-byte vector of a 16-bit type (two float4 of float32)
// each way when both pointers are 16-byte aligned, scalars otherwise; the
// last count % 8 elements, scalars.
//
// Global memory: reads each element of src once, writes each element of dst
// once. No shared memory.
#include "common.cuh"

template <int S, int D>
__device__ __forceinline__ void lora_convert_impl(const void* __restrict__ src, void* __restrict__ dst,
                                                  long long count) {
  typedef typename lora_elem<S>::type ST;
  typedef typename lora_elem<D>::type DTy;
  const ST* s = static_cast<const ST*>(src);
  DTy* d = static_cast<DTy*>(dst);
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long groups = count / 8;
  if (lora_aligned16(s) && lora_aligned16(d)) {
    for (long long g = first; g < groups; g += stride) {
      float v[8];
      lora_load8_cs<S>(s + 8 * g, v);
      lora_store8<D>(d + 8 * g, v);
    }
  } else {
    for (long long i = first; i < 8 * groups; i += stride) lora_store1<D>(d, i, lora_widen<S>(s[i]));
  }
  for (long long i = 8 * groups + first; i < count; i += stride) lora_store1<D>(d, i, lora_widen<S>(s[i]));
}

// lora_convert_<s>_<d>(const S* src, D* dst, long long count): one entry
// point per pair of element types, S and D float, __half or __nv_bfloat16.
#define LORA_CONVERT_KERNEL(name, S, ST, D, DTY)                                                  \
  extern "C" __global__ void __launch_bounds__(LORA_CONVERT_THREADS)                               \
      name(const ST* __restrict__ src, DTY* __restrict__ dst, long long count) {                  \
    lora_convert_impl<S, D>(src, dst, count);                                                     \
  }
LORA_CONVERT_KERNEL(lora_convert_f32_f32, LORA_F32, float, LORA_F32, float)
LORA_CONVERT_KERNEL(lora_convert_f32_f16, LORA_F32, float, LORA_F16, __half)
LORA_CONVERT_KERNEL(lora_convert_f32_bf16, LORA_F32, float, LORA_BF16, __nv_bfloat16)
LORA_CONVERT_KERNEL(lora_convert_f16_f32, LORA_F16, __half, LORA_F32, float)
LORA_CONVERT_KERNEL(lora_convert_f16_f16, LORA_F16, __half, LORA_F16, __half)
LORA_CONVERT_KERNEL(lora_convert_f16_bf16, LORA_F16, __half, LORA_BF16, __nv_bfloat16)
LORA_CONVERT_KERNEL(lora_convert_bf16_f32, LORA_BF16, __nv_bfloat16, LORA_F32, float)
LORA_CONVERT_KERNEL(lora_convert_bf16_f16, LORA_BF16, __nv_bfloat16, LORA_F16, __half)
LORA_CONVERT_KERNEL(lora_convert_bf16_bf16, LORA_BF16, __nv_bfloat16, LORA_BF16, __nv_bfloat16)
#undef LORA_CONVERT_KERNEL

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_convert_f32_f32)
LORA_EMU_REGISTER(lora_convert_f32_f16)
LORA_EMU_REGISTER(lora_convert_f32_bf16)
LORA_EMU_REGISTER(lora_convert_f16_f32)
LORA_EMU_REGISTER(lora_convert_f16_f16)
LORA_EMU_REGISTER(lora_convert_f16_bf16)
LORA_EMU_REGISTER(lora_convert_bf16_f32)
LORA_EMU_REGISTER(lora_convert_bf16_f16)
LORA_EMU_REGISTER(lora_convert_bf16_bf16)
#endif
