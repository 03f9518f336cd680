// Package kernels holds the CUDA kernels of package lora: the .cu sources,
// emu.h (the emulation of the CUDA thread model that lets the same sources
// run on the CPU in the cudaemu build), tiles.h (the launch constants shared
// by the kernels and the Go code that launches them), and lora.fatbin, the
// kernels compiled by nvcc for sm_70 to sm_90 with PTX for newer GPUs, which
// the cuda build embeds. `make kernels` rebuilds lora.fatbin.
//
// In the default build the package holds only Params, the kernels' parameter
// counts.
package kernels
