// optim.cu: one optimizer step over the adapter's A and B, in place.
//
// Both kernels treat A (countA elements) and B (countB elements) as one
// array of countA + countB parameters, element e being A[e] for e < countA
// and B[e - countA] otherwise, with the gradients dA and dB laid out alike.
// Each element is read and written by one thread of a grid-stride loop;
// consecutive threads take consecutive elements, so every access is
// coalesced. fp32 throughout; the per-step scalars come from the host.
//
// Global memory per element: reads the parameter, its gradient and its
// state (AdamW: m and v; SGD with momentum: the buffer), writes the
// parameter and the state. No shared memory.
#include "common.cuh"

// lora_adamw: one AdamW step (torch.optim.AdamW), state = [m | v], each
// countA + countB floats:
//   m <- beta1*m + (1-beta1)*g
//   v <- beta2*v + (1-beta2)*g^2
//   p <- p*decay - step * m / (sqrt(v)*inv_sqrt_bc2 + eps)
// with decay = 1 - lr*weight_decay, step = lr / (1 - beta1^t) and
// inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t) for step t.
extern "C" __global__ void __launch_bounds__(LORA_OPT_THREADS)
    lora_adamw(float* __restrict__ A, float* __restrict__ B, const float* __restrict__ dA,
               const float* __restrict__ dB, float* __restrict__ state, long long countA,
               long long countB, float decay, float step, float inv_sqrt_bc2, float eps,
               float beta1, float beta2) {
  const long long total = countA + countB;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  float* __restrict__ m = state;
  float* __restrict__ v = state + total;
  const float omb1 = 1.0f - beta1;
  const float omb2 = 1.0f - beta2;
  for (long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const bool in_a = e < countA;
    float* p = in_a ? A + e : B + (e - countA);
    const float g = in_a ? __ldg(dA + e) : __ldg(dB + (e - countA));
    const float me = beta1 * m[e] + omb1 * g;
    const float ve = beta2 * v[e] + omb2 * g * g;
    m[e] = me;
    v[e] = ve;
    const float den = sqrtf(ve) * inv_sqrt_bc2 + eps;
    *p = *p * decay - step * me / den;
  }
}

// lora_sgd: one SGD step (torch.optim.SGD without dampening or Nesterov).
// With buf (countA + countB floats): buf <- momentum*buf + g, p <- p - lr*buf;
// with buf null: p <- p - lr*g.
extern "C" __global__ void __launch_bounds__(LORA_OPT_THREADS)
    lora_sgd(float* __restrict__ A, float* __restrict__ B, const float* __restrict__ dA,
             const float* __restrict__ dB, float* __restrict__ buf, long long countA,
             long long countB, float lr, float momentum) {
  const long long total = countA + countB;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const bool in_a = e < countA;
    float* p = in_a ? A + e : B + (e - countA);
    float g = in_a ? __ldg(dA + e) : __ldg(dB + (e - countA));
    if (buf != nullptr) {
      g = momentum * buf[e] + g;
      buf[e] = g;
    }
    *p = *p - lr * g;
  }
}

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_adamw)
LORA_EMU_REGISTER(lora_sgd)
#endif
