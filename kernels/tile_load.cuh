// tile_load.cuh: the guarded loads with which the tiled kernels fetch their
// operands from global memory into registers, a short run of one row of a
// row-major matrix at a time: four float32, or eight 16-bit elements kept as
// their bits. Each reads global memory only, through the read-only cache:
// one 16-byte vector when the whole run lies in the row and the caller
// promises the alignment, element loads otherwise, with zeros for the
// elements past the row's end and for a row out of range (those are not
// read).
#ifndef LORA_TILE_LOAD_CUH
#define LORA_TILE_LOAD_CUH

#include "common.cuh"

// v = src[row, k .. k+3] of a row-major matrix with leading dimension ld,
// zero where !row_ok or k+e >= klen: one float4 when vec (which promises
// the alignment) and the whole run is in range.
__device__ __forceinline__ void lora_tile_fetch(const float* __restrict__ src, int ld, int row,
                                                bool row_ok, int k, int klen, bool vec,
                                                float (&v)[4]) {
  if (row_ok && vec && k + 3 < klen) {
    const float4 q = __ldg(reinterpret_cast<const float4*>(src + static_cast<long long>(row) * ld + k));
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
  } else {
    LORA_UNROLL
    for (int e = 0; e < 4; ++e)
      v[e] = (row_ok && k + e < klen) ? __ldg(src + static_cast<long long>(row) * ld + k + e) : 0.0f;
  }
}

// The bits of src[row, k .. k+7] of a row-major matrix of 16-bit elements
// with leading dimension ld, two to a word, the first in the low half; zero
// (+0.0) where !row_ok or k+e >= klen: one 16-byte load when vec (which
// promises the alignment) and the whole run is in range.
__device__ __forceinline__ uint4 lora_fetch8_bits(const unsigned short* __restrict__ src, long long ld,
                                                  int row, bool row_ok, int k, int klen, bool vec) {
  const unsigned short* p = src + static_cast<long long>(row) * ld + k;
  if (row_ok && vec && k + 7 < klen) return __ldg(reinterpret_cast<const uint4*>(p));
  unsigned e[8];
  LORA_UNROLL
  for (int j = 0; j < 8; ++j) e[j] = row_ok && k + j < klen ? __ldg(p + j) : 0u;
  return make_uint4(e[0] | e[1] << 16, e[2] | e[3] << 16, e[4] | e[5] << 16, e[6] | e[7] << 16);
}

// The same loads at a pointer: p into a row with ncols elements left from p
// on (none when ncols <= 0), vec promising that p is 16-byte aligned.
__device__ __forceinline__ void lora_fetch4_at(const float* __restrict__ p, bool row_ok, int ncols,
                                               bool vec, float (&v)[4]) {
  lora_tile_fetch(p, 0, 0, row_ok, 0, ncols, vec, v);
}
__device__ __forceinline__ uint4 lora_fetch8_bits_at(const unsigned short* __restrict__ p,
                                                     bool row_ok, int ncols, bool vec) {
  return lora_fetch8_bits(p, 0, 0, row_ok, 0, ncols, vec);
}

#endif  // LORA_TILE_LOAD_CUH
