// lora.cu: the one translation unit of the kernels. nvcc compiles it into
// lora.fatbin; the cudaemu build compiles it with a C++20 compiler, where
// emu.h (through common.cuh) runs the same kernels on the CPU and defines the
// entry points of emu_api.h. Kernel names and signatures:
//
//   lora_shrink(const float* x, const float* A, float* T, int n, int in, int r, float s)
//   lora_forward_small(const float* x, const float* W, const float* T, const float* B,
//                      float* y, int n, int in, int out, int r)
//   lora_forward_tiled(same parameters as lora_forward_small)
//   lora_merge(float* W, const float* A, const float* B, int out, int in, int r, float c)
//   lora_finite(const float* p, long long count, int* flag)
//   lora_axpy(float* y, const float* x, long long count, float alpha)
//
// Launch geometry: tiles.h.
#include "common.cuh"

#include "shrink.cu"
#include "forward_small.cu"
#include "forward_tiled.cu"
#include "merge.cu"
#include "finite.cu"
#include "axpy.cu"
