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

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
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

// ---- Element types -----------------------------------------------------------
//
// A matrix holds float32, IEEE 754 binary16 or bfloat16 elements: LORA_F32,
// LORA_F16 and LORA_BF16, the values of package lora's DType. A 16-bit
// element is kept as its bit pattern (unsigned short); kernels widen it
// exactly to float where they read it, compute in float, and round a result
// once, to nearest even, where they store it (a finite value beyond the
// type's range becomes ±Inf). Templates take the element type as an int DT
// so that the inner loops never test it at run time.
#define LORA_F32 0
#define LORA_F16 1
#define LORA_BF16 2
// LORA_NF4: a W of 4-bit NormalFloat codes, two a byte, with a float32
// absmax per block (nf4.cu); only the kernels that read W take it, through
// the NF4 helpers below and lora_fetch8_nf4 (tile_load.cuh).
#define LORA_NF4 3

template <int DT>
struct lora_elem {
  typedef unsigned short type;  // F16, BF16: the bit pattern
};
template <>
struct lora_elem<LORA_F32> {
  typedef float type;
};
template <>
struct lora_elem<LORA_NF4> {
  typedef unsigned char type;  // two codes a byte
};

// The 16-bit patterns, widened exactly and rounded to nearest even, through
// the conversions of cuda_fp16.h and cuda_bf16.h (emulated by emu.h).
__device__ __forceinline__ float lora_f16_to_float(unsigned short h) {
  return __half2float(__ushort_as_half(h));
}
__device__ __forceinline__ float lora_bf16_to_float(unsigned short h) {
  __nv_bfloat16_raw r;
  r.x = h;
  return __bfloat162float(__nv_bfloat16(r));
}
__device__ __forceinline__ unsigned short lora_float_to_f16(float v) {
  return __half_as_ushort(__float2half_rn(v));
}
__device__ __forceinline__ unsigned short lora_float_to_bf16(float v) {
  return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(v)).x;
}

// lora_widen<DT>(e) is the float value of element e.
template <int DT>
__device__ __forceinline__ float lora_widen(typename lora_elem<DT>::type e);
template <>
__device__ __forceinline__ float lora_widen<LORA_F32>(float e) {
  return e;
}
template <>
__device__ __forceinline__ float lora_widen<LORA_F16>(unsigned short e) {
  return lora_f16_to_float(e);
}
template <>
__device__ __forceinline__ float lora_widen<LORA_BF16>(unsigned short e) {
  return lora_bf16_to_float(e);
}

// lora_round<DT>(v) is v rounded to the element type, to nearest even.
template <int DT>
__device__ __forceinline__ typename lora_elem<DT>::type lora_round(float v);
template <>
__device__ __forceinline__ float lora_round<LORA_F32>(float v) {
  return v;
}
template <>
__device__ __forceinline__ unsigned short lora_round<LORA_F16>(float v) {
  return lora_float_to_f16(v);
}
template <>
__device__ __forceinline__ unsigned short lora_round<LORA_BF16>(float v) {
  return lora_float_to_bf16(v);
}

// The two 16-bit elements of a 32-bit word, the lower-addressed one in its
// low half (little-endian), widened.
template <int DT>
__device__ __forceinline__ float lora_lo(unsigned w) {
  return lora_widen<DT>(static_cast<unsigned short>(w & 0xffffu));
}
template <int DT>
__device__ __forceinline__ float lora_hi(unsigned w) {
  return lora_widen<DT>(static_cast<unsigned short>(w >> 16));
}

// Two floats rounded into one word of two 16-bit elements, lo first.
template <int DT>
__device__ __forceinline__ unsigned lora_pack2(float lo, float hi) {
  return static_cast<unsigned>(lora_round<DT>(lo)) | static_cast<unsigned>(lora_round<DT>(hi)) << 16;
}

// Eight 16-bit elements, one 16-byte vector, widened to v[0..7].
template <int DT>
__device__ __forceinline__ void lora_unpack8(uint4 q, float (&v)[8]) {
  v[0] = lora_lo<DT>(q.x);
  v[1] = lora_hi<DT>(q.x);
  v[2] = lora_lo<DT>(q.y);
  v[3] = lora_hi<DT>(q.y);
  v[4] = lora_lo<DT>(q.z);
  v[5] = lora_hi<DT>(q.z);
  v[6] = lora_lo<DT>(q.w);
  v[7] = lora_hi<DT>(q.w);
}

// Eight floats rounded into one 16-byte vector of 16-bit elements.
template <int DT>
__device__ __forceinline__ uint4 lora_pack8(const float (&v)[8]) {
  return make_uint4(lora_pack2<DT>(v[0], v[1]), lora_pack2<DT>(v[2], v[3]),
                    lora_pack2<DT>(v[4], v[5]), lora_pack2<DT>(v[6], v[7]));
}

// v = p[0 .. 7] widened, through the read-only cache: one 16-byte load of a
// 16-bit type, two float4 of float32. p must be 16-byte aligned.
template <int DT>
__device__ __forceinline__ void lora_load8(const typename lora_elem<DT>::type* p, float (&v)[8]) {
  if constexpr (DT == LORA_F32) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
    lora_unpack8<DT>(__ldg(reinterpret_cast<const uint4*>(p)), v);
  }
}

// As lora_load8, streaming (evict-first): for data read exactly once.
template <int DT>
__device__ __forceinline__ void lora_load8_cs(const typename lora_elem<DT>::type* p, float (&v)[8]) {
  if constexpr (DT == LORA_F32) {
    const float4 a = __ldcs(reinterpret_cast<const float4*>(p));
    const float4 b = __ldcs(reinterpret_cast<const float4*>(p) + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
    lora_unpack8<DT>(__ldcs(reinterpret_cast<const uint4*>(p)), v);
  }
}

// p[0 .. 7] = v rounded: one 16-byte store of a 16-bit type, two float4 of
// float32. p must be 16-byte aligned.
template <int DT>
__device__ __forceinline__ void lora_store8(typename lora_elem<DT>::type* p, const float (&v)[8]) {
  if constexpr (DT == LORA_F32) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else {
    *reinterpret_cast<uint4*>(p) = lora_pack8<DT>(v);
  }
}

// The 16-bit patterns behind a kernel's __half or __nv_bfloat16 parameter
// (a float parameter as it is).
__device__ __forceinline__ const float* lora_bits(const float* p) { return p; }
__device__ __forceinline__ float* lora_bits(float* p) { return p; }
__device__ __forceinline__ const unsigned short* lora_bits(const __half* p) {
  return reinterpret_cast<const unsigned short*>(p);
}
__device__ __forceinline__ const unsigned short* lora_bits(const __nv_bfloat16* p) {
  return reinterpret_cast<const unsigned short*>(p);
}
__device__ __forceinline__ unsigned short* lora_bits(__half* p) {
  return reinterpret_cast<unsigned short*>(p);
}
__device__ __forceinline__ unsigned short* lora_bits(__nv_bfloat16* p) {
  return reinterpret_cast<unsigned short*>(p);
}

// p[i] widened, through the read-only cache.
template <int DT>
__device__ __forceinline__ float lora_load1(const typename lora_elem<DT>::type* p, long long i) {
  return lora_widen<DT>(__ldg(p + i));
}

// p[i] = v rounded.
template <int DT>
__device__ __forceinline__ void lora_store1(typename lora_elem<DT>::type* p, long long i, float v) {
  p[i] = lora_round<DT>(v);
}

// ---- NF4 ------------------------------------------------------------------
//
// An NF4 element's value is lora_nf4_entry(code) * absmax[block], one float32
// rounding; the kernels that read an NF4 W keep the 16 entries in shared
// memory.

// lora_nf4_entry(k) is bitsandbytes' NF4 table entry k as float32 (the
// literals round to the same float32 values as internal/cpu.NF4Table).
__device__ __forceinline__ float lora_nf4_entry(int k) {
  switch (k) {
    case 0: return -1.0f;
    case 1: return -0.6961928009986877f;
    case 2: return -0.5250730514526367f;
    case 3: return -0.39491748809814453f;
    case 4: return -0.28444138169288635f;
    case 5: return -0.18477343022823334f;
    case 6: return -0.09105003625154495f;
    case 7: return 0.0f;
    case 8: return 0.07958029955625534f;
    case 9: return 0.16093020141124725f;
    case 10: return 0.24611230850220184f;
    case 11: return 0.33791524171829224f;
    case 12: return 0.44070982260894775f;
    case 13: return 0.5626170039176941f;
    case 14: return 0.7229568362236023f;
    default: return 1.0f;
  }
}

// log2(block) for a block size that is a power of two (the NF4 contract:
// 32 to 4096), −1 otherwise, where the kernels write nothing. Absmax
// indices are then shifts, not 64-bit divisions.
__device__ __forceinline__ int lora_nf4_log2(int block) {
  if (block < 1 || (block & (block - 1)) != 0) return -1;
  int sh = 0;
  while ((1 << sh) < block) ++sh;
  return sh;
}

// Writes the table into tab[0 .. 15]; the caller's __syncthreads follows.
__device__ __forceinline__ void lora_nf4_fill(float* tab) {
  if (threadIdx.x < 16) tab[threadIdx.x] = lora_nf4_entry(static_cast<int>(threadIdx.x));
}

#endif  // LORA_COMMON_CUH
