// tile_load.cuh: the guarded loads with which the tiled kernels fetch their
// operands from global memory into registers, a short run of one row of a
// row-major matrix at a time: four float32, or eight 16-bit elements kept as
// their bits. Each reads global memory only, through the read-only cache:
// one 16-byte vector when the whole run lies in the row and the caller
// promises the alignment, element loads otherwise, with zeros for the
// elements past the row's end and for a row out of range (those are not
// read). An NF4 W's run of eight elements is fetched as its codes and
// absmax (lora_fetch8_nf4) and dequantized where it is stored to shared
// memory (lora_unpack8_nf4).
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

// The run of eight consecutive elements f0 .. f0+7 (flat, row-major
// indices) of an NF4 matrix: its codes, codes of 0.0 (7) for the elements
// past the row's end (e >= navail) or for a row out of range (!row_ok),
// which are not read, and the absmax of its first and last element read.
// Returned as a uint4 (what a tiled kernel keeps in flight for a 16-bit W):
//   x: the eight codes as lora_nf4_word lays them out (byte m: element 2m in
//      the high nibble, 2m+1 in the low), the 32-bit word of codes itself;
//   y, z: the bits of a0 = absmax of element f0 and a1 = absmax of the last
//      element read (0 when none is);
//   w: cut, the elements e < cut in f0's block (scale a0), the others in the
//      next one (scale a1): a run of 8 spans at most two blocks of >= 8.
// vec promises that f0 % 8 == 0, codes is 4-byte aligned and the block size
// 1 << sh is at least 8: the eight codes are then one 32-bit load and one
// block when the whole run is in the row. Otherwise, element by element (a
// run may then straddle two rows' ends or two blocks).
__device__ __forceinline__ uint4 lora_fetch8_nf4(const unsigned char* __restrict__ codes,
                                                 const float* __restrict__ absmax, int sh,
                                                 long long f0, bool row_ok, int navail, bool vec) {
  if (row_ok && vec && navail >= 8) {
    const unsigned w = __ldg(reinterpret_cast<const unsigned*>(codes + (f0 >> 1)));
    const unsigned a = __float_as_uint(__ldg(absmax + (f0 >> sh)));
    return make_uint4(w, a, a, 8u);
  }
  const int m = row_ok ? lora_max(0, lora_min(navail, 8)) : 0;
  unsigned w = 0x77777777u;
  LORA_UNROLL
  for (int e = 0; e < 8; ++e) {
    if (e < m) {
      const long long f = f0 + e;
      const unsigned b = __ldg(codes + (f >> 1));
      const unsigned k = (f & 1) != 0 ? b & 15u : b >> 4;
      const int shift = 8 * (e >> 1) + ((e & 1) != 0 ? 0 : 4);
      w = (w & ~(15u << shift)) | (k << shift);
    }
  }
  if (m == 0) return make_uint4(w, 0u, 0u, 8u);
  const long long b0 = f0 >> sh;
  const long long next = (b0 + 1) << sh;  // the first element of the next block
  const unsigned cut = next - f0 < 8 ? static_cast<unsigned>(next - f0) : 8u;
  return make_uint4(w, __float_as_uint(__ldg(absmax + b0)),
                    __float_as_uint(__ldg(absmax + ((f0 + m - 1) >> sh))), cut);
}

// v[e] = the value of element e of a run fetched by lora_fetch8_nf4:
// tab[code] * its block's absmax, one float32 product (never contracted into
// a later FMA), so exactly the NF4 value; 0 for the elements not read.
__device__ __forceinline__ void lora_unpack8_nf4(uint4 q, const float* tab, float (&v)[8]) {
  const float a0 = __uint_as_float(q.y), a1 = __uint_as_float(q.z);
  LORA_UNROLL
  for (int m = 0; m < 4; ++m) {
    v[2 * m] = __fmul_rn(tab[(q.x >> (8 * m + 4)) & 15u], static_cast<unsigned>(2 * m) < q.w ? a0 : a1);
    v[2 * m + 1] = __fmul_rn(tab[(q.x >> (8 * m)) & 15u], static_cast<unsigned>(2 * m + 1) < q.w ? a0 : a1);
  }
}

#endif  // LORA_TILE_LOAD_CUH
