//go:build cudaemu

// The kernels of lora.fatbin compiled for the CPU: emu.h, included through
// common.cuh when nvcc is not the compiler, emulates the CUDA thread model
// and defines the entry points of emu_api.h.
#include "lora.cu"
