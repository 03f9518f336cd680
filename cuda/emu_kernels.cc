//go:build cudaemu

// The kernels of lora.fatbin compiled for the CPU: emu.h, included through
// common.cuh when nvcc is not the compiler, emulates the CUDA thread model
// and defines the entry points of emu_api.h.
#include "lora.cu"

// Kernels for the tests of the emulator itself (emu_test.go); their
// names start with emutest_, which no kernel of lora.fatbin does.

// Thread 0 waits, up to about 5 seconds, for *flag to be set by the host
// while the kernel runs, then writes out[0] = 1 if it saw it, 0 if not.
extern "C" __global__ void emutest_wait(int* flag, int* out) {
  if (threadIdx.x != 0) return;
  int seen = 0;
  for (int i = 0; i < 5000 && !seen; ++i) {
    seen = __atomic_load_n(flag, __ATOMIC_ACQUIRE) != 0;
    if (!seen) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, nullptr);
    }
  }
  out[0] = seen;
}

// Lane 0 returns; the other lanes shuffle over the full warp, which names
// it: a fault.
extern "C" __global__ void emutest_exited(float* out) {
  if (threadIdx.x == 0) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

// Each thread reads its word of a static shared array before any thread of
// its block writes it, into out, then writes it: the emulator fills the
// shared memory a kernel uses with 0xffa5a5a5 before every block, so every
// word read is that, at the first launch and at every later one (after
// which only the range it learned is filled). Its block size is the
// array's.
extern "C" __global__ void emutest_shared(unsigned* out) {
  __shared__ unsigned s[64];
  unsigned t = threadIdx.x;
  out[blockIdx.x * blockDim.x + t] = s[t];
  __syncthreads();
  s[t] = blockIdx.x + 1;
}

// Every lane shuffles with a mask that leaves out lane 0: lane 0's call
// does not name the calling lane, a fault.
extern "C" __global__ void emutest_unnamed(float* out) {
  out[threadIdx.x] = __shfl_sync(0xfffffffeu, 1.0f, 1);
}

LORA_EMU_REGISTER(emutest_wait)
LORA_EMU_REGISTER(emutest_exited)
LORA_EMU_REGISTER(emutest_shared)
LORA_EMU_REGISTER(emutest_unnamed)
