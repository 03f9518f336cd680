// Package cuda is the Go side of the GPU backend of package lora: a device
// context, device memory, the kernels of lora.fatbin, launches and errors
// that carry the CUDA error name.
//
// Three builds provide the same functions:
//
//	-tags cuda      driver.go: a real GPU through gorgonia.org/cu. Only this
//	                file imports that package, whose init ends the process
//	                when no GPU is present.
//	-tags cudaemu   emu.go: the very same kernels compiled by the host C++
//	                compiler against kernels/emu.h, which emulates the CUDA
//	                thread model on the CPU; host memory stands in for device
//	                memory. The emulator checks every device address it is
//	                given (copies, memsets, a launch's pointer arguments)
//	                against its live allocations and turns a stray one into a
//	                device fault, as a GPU would. Its mma.sync sums as
//	                the tensor cores were measured to (truncating toward
//	                zero), not exactly, unless LORA_EMU_MMA=exact; its
//	                ldmatrix faults on an address outside shared memory.
//	default         none.go: no GPU backend. The functions exist, so that the
//	                package documents itself and compiles; each one that would
//	                use a device returns an error saying to build with -tags
//	                cuda or cudaemu.
//
// Every function is safe to call from any goroutine. The driver binds a
// context to an OS thread, so each call takes a package-wide lock, locks its
// goroutine to its thread and makes the context current there before any
// driver call. All work goes to one stream, the context's default stream:
// launches and copies run in the order they were issued, and launches return
// without waiting for the kernel.
//
// # Launches
//
// Args packs a launch's parameters. Launch refuses, before anything reaches
// the device, arguments whose number differs from the kernel's declared
// parameters (kernels.Params) and a geometry outside CUDA's limits. Args holds
// device addresses as numbers: the caller keeps the owners of that memory
// alive until Launch returns.
//
// # Faults
//
// A device fault (an illegal address, a kernel that traps, an uncorrectable
// memory error, a failed Free) leaves the CUDA context unusable for the rest
// of the process. The package records the first fault (see Fault), and from
// then on every function that uses the device returns an error wrapping that
// first fault. The process must be restarted to use the GPU again.
// Running out of device memory is not a fault: Alloc says so and later calls
// work.
package cuda
