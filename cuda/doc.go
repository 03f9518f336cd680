// Package cuda is the Go side of the GPU backend of package lora: a device
// context, device memory, the kernels of lora.fatbin, launches and errors
// that carry the CUDA error name.
//
// Two builds provide the same functions:
//
//	-tags cuda      driver.go: a real GPU through gorgonia.org/cu. Only this
//	                file imports that package, whose init ends the process
//	                when no GPU is present.
//	-tags cudaemu   emu.go: the very same kernels compiled by the host C++
//	                compiler against kernels/emu.h, which emulates the CUDA
//	                thread model on the CPU; host memory stands in for device
//	                memory.
//
// In the default build the package is empty.
//
// Every function is safe to call from any goroutine. The driver binds a
// context to an OS thread, so each call takes a package-wide lock, locks its
// goroutine to its thread and makes the context current there before any
// driver call. All work goes to one stream, the context's default stream:
// launches and copies run in the order they were issued, and launches return
// without waiting for the kernel.
package cuda
