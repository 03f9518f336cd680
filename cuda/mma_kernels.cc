//go:build cudaemu

// Test kernels of the emulator's 16-bit types and tensor-core operations
// (mma_test.go), in a translation unit of their own: LORA_EMU_SECONDARY
// leaves the emulator's entry points to emu_kernels.cc, and the kernels join
// its registry. Their names start with emutest_, which no kernel of
// lora.fatbin does.
#define LORA_EMU_SECONDARY
#include "mma.cuh"

// Thread i of a block converts element i, i + blockDim.x, ... of the inputs
// of each conversion: f32 (count floats) into f16 and bf16 patterns by
// __float2half_rn and __float2bfloat16_rn, and h16 (count patterns) into
// floats by __half2float (into wf16) and __bfloat162float (into wbf16).
extern "C" __global__ void emutest_half(const float* f32, unsigned short* f16, unsigned short* bf16,
                                        const unsigned short* h16, float* wf16, float* wbf16,
                                        int count) {
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    f16[i] = __half_as_ushort(__float2half_rn(f32[i]));
    bf16[i] = __bfloat16_as_ushort(__float2bfloat16_rn(f32[i]));
    wf16[i] = __half2float(__ushort_as_half(h16[i]));
    wbf16[i] = __bfloat162float(__ushort_as_bfloat16(h16[i]));
  }
}

// One warp: each lane gathers its fragments of A (16 x 16, 16-bit patterns,
// row-major), B (16 x 8, 16-bit patterns, row-major: B[k][n] at k*8 + n) and
// C (16 x 8 floats, row-major) through the index tables ia (32 x 8: the
// flat index of a0 .. a7 of each lane), ib (32 x 4: b0 .. b3) and ic
// (32 x 4: c0 .. c3), packs element 2q into the low half of register q and
// 2q+1 into its high half, runs the mma (bfloat16 when bf16 != 0, binary16
// otherwise) and scatters d0 .. d3 into D through ic.
extern "C" __global__ void emutest_mma(const unsigned short* A, const unsigned short* B,
                                       const float* C, float* D, const int* ia, const int* ib,
                                       const int* ic, int bf16) {
  const int lane = threadIdx.x;
  uint32_t a[4], b[2];
  float c[4], d[4];
  for (int q = 0; q < 4; ++q) a[q] = A[ia[lane * 8 + 2 * q]] | static_cast<uint32_t>(A[ia[lane * 8 + 2 * q + 1]]) << 16;
  for (int q = 0; q < 2; ++q) b[q] = B[ib[lane * 4 + 2 * q]] | static_cast<uint32_t>(B[ib[lane * 4 + 2 * q + 1]]) << 16;
  for (int q = 0; q < 4; ++q) c[q] = C[ic[lane * 4 + q]];
  if (bf16)
    lora_mma_m16n8k16<true>(d, a, b, c);
  else
    lora_mma_m16n8k16<false>(d, a, b, c);
  for (int q = 0; q < 4; ++q) D[ic[lane * 4 + q]] = d[q];
}

// The lanes of one warp from `skip` on run an mma; the lanes below return
// first: a fault, as mma.sync.aligned needs the whole warp.
extern "C" __global__ void emutest_mma_partial(float* D, int skip) {
  const int lane = threadIdx.x;
  if (lane < skip) return;
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float c[4] = {1, 1, 1, 1};
  lora_mma_m16n8k16<true>(c, a, b, c);
  D[lane] = c[0];
}

// One warp: the lanes copy M (32 x 16 16-bit elements) into shared memory,
// static when dyn == 0, the launch's dynamic shared memory (1024 bytes or
// more) otherwise; then lane l gives S + off[l] (off[l] a multiple of 8) as
// its row address to ldmatrix.x4 and stores the four registers it receives
// in R[4l .. 4l+3].
extern "C" __global__ void emutest_ldmatrix(const unsigned short* M, const int* off, unsigned* R, int dyn) {
  __shared__ __align__(16) unsigned short sm[32 * 16];
  LORA_DYNAMIC_SHARED(unsigned short, dm);
  unsigned short* s = dyn ? dm : sm;
  const int lane = threadIdx.x;
  for (int i = lane; i < 32 * 16; i += 32) s[i] = M[i];
  __syncthreads();
  uint32_t r[4];
  lora_ldmatrix_x4(r, s + off[lane]);
  for (int j = 0; j < 4; ++j) R[lane * 4 + j] = r[j];
}

// One warp: lane l gives M + 8l, in global memory (16-byte aligned when M
// is), as its row address to ldmatrix.x4: a fault, as ldmatrix reads shared
// memory only. R receives the registers, were it to run.
extern "C" __global__ void emutest_ldmatrix_global(const unsigned short* M, unsigned* R) {
  const int lane = threadIdx.x;
  uint32_t r[4];
  lora_ldmatrix_x4(r, M + 8 * lane);
  for (int j = 0; j < 4; ++j) R[lane * 4 + j] = r[j];
}

LORA_EMU_REGISTER(emutest_ldmatrix)
LORA_EMU_REGISTER(emutest_ldmatrix_global)
LORA_EMU_REGISTER(emutest_half)
LORA_EMU_REGISTER(emutest_mma)
LORA_EMU_REGISTER(emutest_mma_partial)
