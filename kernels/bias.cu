// bias.cu: y[i, j] += bias[j] for every row i of y (rows x cols) and column j:
// a row vector broadcast over the rows, the bias of nn.Linear.
//
// x of the grid sweeps the columns, y of the grid the rows, both grid-stride.
// A thread loads its column's bias once and adds it to that column of every
// row it visits. When cols % 4 == 0 and y and bias are 16-byte aligned, every
// row starts on a 16-byte boundary and a thread owns 4 adjacent columns
// (float4 loads and stores); otherwise one column, with scalar accesses that
// are still coalesced across the warp. Each sum is one rounding, y + bias.
//
// Global memory: reads and writes each element of y once; reads each element
// of bias once per row of the grid. No shared memory.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(LORA_BIAS_THREADS)
    lora_add_bias(float* __restrict__ y, const float* __restrict__ bias, long long rows,
                  long long cols) {
  const long long cstride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long c0 = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if ((cols & 3) == 0 && lora_aligned16(y) && lora_aligned16(bias)) {
    const long long cols4 = cols >> 2;
    const float4* b4 = reinterpret_cast<const float4*>(bias);
    for (long long j = c0; j < cols4; j += cstride) {
      const float4 b = __ldg(b4 + j);
      for (long long i = blockIdx.y; i < rows; i += gridDim.y) {
        float4* p = reinterpret_cast<float4*>(y + i * cols) + j;
        float4 v = *p;
        v.x = __fadd_rn(v.x, b.x);
        v.y = __fadd_rn(v.y, b.y);
        v.z = __fadd_rn(v.z, b.z);
        v.w = __fadd_rn(v.w, b.w);
        *p = v;
      }
    }
    return;
  }
  for (long long j = c0; j < cols; j += cstride) {
    const float b = __ldg(bias + j);
    for (long long i = blockIdx.y; i < rows; i += gridDim.y) {
      float* p = y + i * cols + j;
      *p = __fadd_rn(*p, b);
    }
  }
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_add_bias)
#endif
