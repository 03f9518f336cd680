// convert.cu: dst = src rounded to dst's element type, any element types.
//
// dst[i] = round(widen(src[i])) for i < count: src widened exactly to float,
// then rounded to nearest even to dst's type (a finite value beyond its
// range becomes ±Inf, a NaN stays a NaN). sdt and ddt are LORA_F32,
// LORA_F16 or LORA_BF16; the kernel picks one template instance per pair at
// entry, so the loop never tests them. Thread t of block b handles the
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

extern "C" __global__ void __launch_bounds__(LORA_CONVERT_THREADS)
    lora_convert(const void* __restrict__ src, void* __restrict__ dst, long long count, int sdt,
                 int ddt) {
#define LORA_CONVERT_TO(S)                                                   \
  do {                                                                       \
    if (ddt == LORA_F32) lora_convert_impl<S, LORA_F32>(src, dst, count);    \
    if (ddt == LORA_F16) lora_convert_impl<S, LORA_F16>(src, dst, count);    \
    if (ddt == LORA_BF16) lora_convert_impl<S, LORA_BF16>(src, dst, count);  \
  } while (0)
  if (sdt == LORA_F32) LORA_CONVERT_TO(LORA_F32);
  if (sdt == LORA_F16) LORA_CONVERT_TO(LORA_F16);
  if (sdt == LORA_BF16) LORA_CONVERT_TO(LORA_BF16);
#undef LORA_CONVERT_TO
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_convert)
#endif
