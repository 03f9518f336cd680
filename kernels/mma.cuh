// mma.cuh: the tensor-core instructions the kernels use (mma.sync m16n8k16
// and ldmatrix .x4), one device function per instruction. On the GPUs that
// have the instruction (sm_80 for the mma, sm_75 for ldmatrix) each is the
// instruction itself, as inline PTX; under the emulator (emu.h) a
// warp-collective emulation that follows the PTX ISA's fragment layouts; on
// older GPUs (whose code nvcc still builds) a trap: the launch planner never
// runs these kernels there.
//
// Fragment layouts of mma.m16n8k16 with .f16/.bf16 multiplicands and .f32
// accumulators (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
// point type"), with g = lane >> 2 (groupID) and t = lane % 4
// (threadID_in_group); a 32-bit register holds two 16-bit elements, the
// lower-numbered one in its low half:
//   a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//   a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]      (A: 16 x 16, row-major)
//   b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]        (B: 16 x 8, column-major)
//   c[0], c[1] = C[g][2t, 2t+1]    c[2], c[3] = C[g+8][2t, 2t+1]   (C, D: 16 x 8)
// So with B = Wᵀ for a row-major W (out x in), b[q] is two consecutive
// elements of row g of W, exactly like a[q] of x.
#ifndef LORA_MMA_CUH
#define LORA_MMA_CUH

#include "common.cuh"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

// d = A·B + c, D and C in float32, A and B bfloat16 (BF16) or binary16
// (!BF16): one mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 or
// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 for the whole warp.
// Every lane of the warp must call it together (.sync.aligned). d may be c.
template <bool BF16>
__device__ __forceinline__ void lora_mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  // The instruction for multiplicands of type T, "bf16" or "f16".
#define LORA_MMA_SYNC(T)                                                                     \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." T "." T ".f32 "                      \
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"       \
               : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                               \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), \
                 "f"(c[1]), "f"(c[2]), "f"(c[3]))
  if constexpr (BF16)
    LORA_MMA_SYNC("bf16");
  else
    LORA_MMA_SYNC("f16");
#undef LORA_MMA_SYNC
#elif defined(__CUDA_ARCH__)
  (void)a;
  (void)b;
  d[0] = c[0];
  d[1] = c[1];
  d[2] = c[2];
  d[3] = c[3];
  __trap();  // sm_80 and newer only
#else
  lora_emu::mma_m16n8k16(BF16, d, a, b, c);
#endif
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: four 8 x 8 matrices of 16-bit
// elements from shared memory, for the whole warp. Lane 8j + i gives in row
// the address of row i of matrix j (16 bytes, 16-byte aligned); lane l
// receives in r[j] the elements 2·(l % 4), 2·(l % 4) + 1 of row l / 4 of
// matrix j (the first in the low half): the layout of an mma fragment
// register. Every lane of the warp must call it together.
__device__ __forceinline__ void lora_ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#elif defined(__CUDA_ARCH__)
  (void)row;
  r[0] = r[1] = r[2] = r[3] = 0;
  __trap();  // sm_75 and newer only
#else
  lora_emu::ldmatrix_x4(r, row);
#endif
}

#endif  // LORA_MMA_CUH
