// lora.cu: the one translation unit of the kernels. nvcc compiles it into
// lora.fatbin; the cudaemu build compiles it with a C++20 compiler, where
// emu.h (through common.cuh) runs the same kernels on the CPU and defines the
// entry points of emu_api.h. Kernel names and signatures:
//
//   lora_shrink(const float* x, const float* A, float* T, int n, int in, int r, float s)
//   lora_forward_small(const float* x, const float* W, const float* A, float* P,
//                      int n, int in, int out, int r)
//   lora_forward_m16, lora_forward_m32, lora_forward_m64(same parameters as lora_forward_small)
//   lora_forward_reduce(const float* P, const float* B, float* y, int n, int out, int r,
//                       int splits, float s)
//   lora_forward_tiled(const float* x, const float* W, const float* T, const float* B,
//                      float* y, int n, int in, int out, int r)
//
//   Half precision: each forward kernel above that reads W has an _f16 and a _bf16 form
//   (lora_forward_small_bf16, lora_forward_m32_f16, lora_forward_tiled_bf16, ...)
//   whose W is const __half* or const __nv_bfloat16*, the other parameters
//   unchanged; lora_forward_small_f16_xf16 and lora_forward_small_bf16_xbf16
//   take x in W's type as well; lora_forward_reduce_f16/_bf16 write y in
//   their type, and lora_shrink_f16/_bf16 read x in theirs.
//
//   lora_merge(float* W, const float* A, const float* B, int out, int in, int r, float c)
//   lora_merge_check(const float* W, const float* A, const float* B, int out, int in, int r,
//                    float c, int* flag)
//   lora_absmax(const float* p, long long count, unsigned* out)
//   lora_add_bias(float* y, const float* bias, long long rows, long long cols)
//   lora_convert_f32_bf16(const float* src, __nv_bfloat16* dst, long long count), and so
//                         on for every pair of f32 (float), f16 (__half), bf16
//   lora_axpy(float* y, const float* x, long long count, float alpha)
//   lora_grad_u(const float* dy, const float* B, float* U, int n, int out, int r, float s)
//   lora_grad_ab(const float* G, const float* H, float* C, int n, int p, int r, int trans)
//   lora_grad_x_small(const float* dy, const float* W, const float* U, const float* A,
//                     float* dx, int n, int in, int out, int r)
//   lora_grad_x_tiled(same parameters as lora_grad_x_small)
//   lora_forward_small_nf4(const float* x, const unsigned char* W, const float* absmax,
//                          const float* A, float* P, int n, int in, int out, int r, int block)
//   lora_grad_x_small_nf4(const float* dy, const unsigned char* W, const float* absmax,
//                         const float* U, const float* A, float* P, int n, int in, int out,
//                         int r, int block)
//   lora_dequantize_nf4_f32(const unsigned char* codes, const float* absmax, float* dst,
//                           long long count, int block), _f16 and _bf16 (dst __half*,
//                           __nv_bfloat16*): an NF4 W's codes and absmax (nf4.cu)
//   lora_forward_m16_nf4, _m32_nf4, _m64_nf4(same parameters as lora_forward_small_nf4)
//   lora_forward_tiled_nf4(const float* x, const unsigned char* W, const float* absmax,
//                          const float* T, const float* B, float* y, int n, int in, int out,
//                          int r, int block)
//   lora_grad_x_tiled_nf4(same parameters as lora_grad_x_small_nf4)
//   lora_grad_x_m16, _m32, _m64(const float* dy, const float* W, const float* U, const float* A,
//                               float* P, int n, int in, int out, int r), and their _f16 and
//                               _bf16 forms (W __half*, __nv_bfloat16*) (backward_mtile.cu)
//   lora_adamw(float* A, float* B, const float* dA, const float* dB, float* state,
//              long long countA, long long countB, float decay, float step,
//              float inv_sqrt_bc2, float eps, float beta1, float beta2)
//   lora_sgd(float* A, float* B, const float* dA, const float* dB, float* buf,
//            long long countA, long long countB, float lr, float momentum)
//   lora_mse(const float* y, const float* t, float* dy, long long count, float scale,
//            float* partial)
//   lora_bank_shrink(const float* x, const LoraBankSlot* slots, const int* tiles,
//                    const int* perm, float* T, int ntiles, int in, int rmax)
//   lora_bank_expand(const float* T, const LoraBankSlot* slots, const int* tiles,
//                    const int* perm, float* y, int ntiles, int out, int rmax)
//   lora_bank_rowshrink(const float* x, const LoraBankSlot* slots, float* T, int n, int in,
//                       int rmax, unsigned long long p0, ..., unsigned long long p5)
//   lora_bank_small(const float* x, const float* W, const float* T, const LoraBankSlot* slots,
//                   float* y, int n, int in, int out, int rmax,
//                   unsigned long long p0, ..., unsigned long long p5)
//
// Launch geometry: tiles.h.
#include "common.cuh"

#include "shrink.cu"
#include "forward_small.cu"
#include "forward_tiled.cu"
#include "forward_mtile.cu"
#include "forward_mma.cu"
#include "merge.cu"
#include "finite.cu"
#include "axpy.cu"
#include "convert.cu"
#include "bias.cu"
#include "backward.cu"
#include "backward_small.cu"
#include "backward_tiled.cu"
#include "backward_mtile.cu"
#include "nf4.cu"
#include "optim.cu"
#include "mse.cu"
#include "bank.cu"
