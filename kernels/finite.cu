// finite.cu: lora_absmax, max |p[i]|, or a non-finite value when p holds
// NaN or ±Inf: what Merge needs to prove its result finite; lora_absmax_f16
// and lora_absmax_bf16 the same over 16-bit elements.
#include "common.cuh"

// lora_absmax: *out = max(*out, the bits of max |p[i]| over p[0 .. count)).
//
// Clearing the sign bit of a float gives the bits of |v|, and for
// non-negative floats the order of their bits as unsigned integers is the
// order of the values, with +Inf (0x7f800000) above every finite value and
// every NaN above +Inf. So the maximum of the cleared bits is the bits of
// max |p[i]| when p is finite, +Inf when it holds an infinity and no NaN, and
// a NaN when it holds one: exact, with no float comparison that a NaN would
// defeat. Each thread takes that maximum over a grid-stride sweep (float4
// loads when p is 16-byte aligned, then the scalar tail), each warp combines
// its lanes with shuffles, warp 0 combines the warps through shared memory,
// and thread 0 folds the block's result into *out with atomicMax. The host
// zeroes *out before the launch.
//
// Global memory: reads p (count floats) once; one atomicMax per block.
// Shared memory: one int per warp (static).
#define LORA_ABS_MASK 0x7fffffffu
#define LORA_ABSMAX_WARPS (LORA_FINITE_THREADS / LORA_WARP_SIZE)

extern "C" __global__ void __launch_bounds__(LORA_FINITE_THREADS)
    lora_absmax(const float* __restrict__ p, long long count, unsigned* __restrict__ out) {
  __shared__ int warp_max[LORA_ABSMAX_WARPS];
  if (blockDim.x != LORA_FINITE_THREADS) return;  // warp_max is sized for this block
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned m = 0;
  long long tail = 0;
  if (lora_aligned16(p)) {
    const long long count4 = count >> 2;
    const float4* p4 = reinterpret_cast<const float4*>(p);
    for (long long i = first; i < count4; i += stride) {
      const float4 v = __ldg(p4 + i);
      m = lora_umax(m, __float_as_uint(v.x) & LORA_ABS_MASK);
      m = lora_umax(m, __float_as_uint(v.y) & LORA_ABS_MASK);
      m = lora_umax(m, __float_as_uint(v.z) & LORA_ABS_MASK);
      m = lora_umax(m, __float_as_uint(v.w) & LORA_ABS_MASK);
    }
    tail = count4 << 2;
  }
  for (long long i = tail + first; i < count; i += stride)
    m = lora_umax(m, __float_as_uint(__ldg(p + i)) & LORA_ABS_MASK);

  // The cleared bits fit an int, so the int warp maximum orders them alike.
  const int w = lora_warp_max(static_cast<int>(m));
  if (threadIdx.x % LORA_WARP_SIZE == 0) warp_max[threadIdx.x / LORA_WARP_SIZE] = w;
  __syncthreads();
  if (threadIdx.x == 0) {
    int b = warp_max[0];
    LORA_UNROLL
    for (int k = 1; k < LORA_ABSMAX_WARPS; ++k) b = lora_max(b, warp_max[k]);
    if (b != 0) atomicMax(out, static_cast<unsigned>(b));
  }
}

// lora_absmax_f16 and lora_absmax_bf16: the same over the 16-bit patterns
// p[0 .. count) of a binary16 or bfloat16 matrix (LORA_F16, LORA_BF16),
// *out = max(*out, the float32 bits of max |p[i]|). With the sign bit
// cleared, the patterns too order as unsigned integers as their magnitudes
// do, with +Inf above every finite value and every NaN above +Inf; the
// block's maximum pattern is widened exactly to float32 (which keeps that
// order: a NaN stays a NaN) before the atomicMax. Each thread sweeps 16-byte
// loads of eight elements when p is 16-byte aligned, then the scalar tail.
//
// Global memory: reads p (count 16-bit elements) once; one atomicMax per
// block. Shared memory: one int per warp (static).
template <int kDT>
__device__ __forceinline__ void lora_absmax_half(const unsigned short* __restrict__ p,
                                                 long long count, unsigned* __restrict__ out) {
  __shared__ int warp_max[LORA_ABSMAX_WARPS];
  if (blockDim.x != LORA_FINITE_THREADS) return;  // warp_max is sized for this block
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned m = 0;
  long long tail = 0;
  if (lora_aligned16(p)) {
    const long long count8 = count >> 3;
    const uint4* p8 = reinterpret_cast<const uint4*>(p);
    for (long long i = first; i < count8; i += stride) {
      const uint4 v = __ldg(p8 + i);
      const unsigned u[4] = {v.x, v.y, v.z, v.w};
      LORA_UNROLL
      for (int e = 0; e < 4; ++e) {
        m = lora_umax(m, u[e] & 0x7fffu);
        m = lora_umax(m, (u[e] >> 16) & 0x7fffu);
      }
    }
    tail = count8 << 3;
  }
  for (long long i = tail + first; i < count; i += stride)
    m = lora_umax(m, static_cast<unsigned>(__ldg(p + i)) & 0x7fffu);

  const int w = lora_warp_max(static_cast<int>(m));
  if (threadIdx.x % LORA_WARP_SIZE == 0) warp_max[threadIdx.x / LORA_WARP_SIZE] = w;
  __syncthreads();
  if (threadIdx.x == 0) {
    int b = warp_max[0];
    LORA_UNROLL
    for (int k = 1; k < LORA_ABSMAX_WARPS; ++k) b = lora_max(b, warp_max[k]);
    if (b != 0) atomicMax(out, __float_as_uint(lora_widen<kDT>(static_cast<unsigned short>(b))));
  }
}

extern "C" __global__ void __launch_bounds__(LORA_FINITE_THREADS)
    lora_absmax_f16(const __half* __restrict__ p, long long count, unsigned* __restrict__ out) {
  lora_absmax_half<LORA_F16>(lora_bits(p), count, out);
}

extern "C" __global__ void __launch_bounds__(LORA_FINITE_THREADS)
    lora_absmax_bf16(const __nv_bfloat16* __restrict__ p, long long count,
                     unsigned* __restrict__ out) {
  lora_absmax_half<LORA_BF16>(lora_bits(p), count, out);
}

#undef LORA_ABSMAX_WARPS
#undef LORA_ABS_MASK

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_absmax)
LORA_EMU_REGISTER(lora_absmax_f16)
LORA_EMU_REGISTER(lora_absmax_bf16)
#endif
