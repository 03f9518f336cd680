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
//	                device fault, as a GPU would. Free and CopyHtoD are
//	                stream-ordered there as on a GPU (see Freeing memory).
//	                Its mma.sync sums as
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
// # Freeing memory
//
// Free is stream-ordered: it returns without waiting, the kernels and copies
// queued before it still use the memory, and nothing queued after it may.
// So a Matrix may be freed right after the last operation that uses it is
// queued. The driver's cuMemFree gives no such contract: its documentation
// says only that it may synchronise, and that it does not for memory of the
// stream-ordered allocator. The cuda build queues cuMemFreeAsync on the
// stream instead, whose contract is exactly this order ("the allocation
// must not be accessed after stream execution reaches the free"), and Alloc
// takes the memory it frees from the device's default pool with
// cuMemAllocAsync, the allocation the driver documents for it; both need
// CUDA 11.2 and a device that reports CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED.
// Elsewhere, with LORA_FREE=sync in the environment, or once the driver has
// refused a cuMemFreeAsync, Alloc takes memory with cuMemAlloc and Free
// first waits for the stream (cuCtxSynchronize), then calls cuMemFree
// (which takes memory of either allocator).
//
// The cost, as the documentation states it: the wait before cuMemFree
// blocks the host until every kernel queued before the free has finished,
// which is what cuMemFree does in practice (the programming guide: cudaFree
// "causes the GPU to synchronize across all executing CUDA streams"), so a
// caller that frees a temporary after each step loses the overlap of host
// and device at every step. cuMemFreeAsync only enqueues: the host never
// blocks, and the memory returns to the driver when the stream reaches the
// free. That is why it is the default. Where the device is out of memory
// while frees are still queued, Alloc waits for the stream and tries once
// more. LORA_FREE=sync is there to measure one against the other.
//
// CopyHtoD is stream-ordered too: a copy of up to 256 KiB (the metadata
// of a launch, a slot of a table) goes through a pinned ring of 4 MiB and
// waits only when copies still queued fill the ring; a larger one goes
// through the pinned staging buffer, and may wait for the stream to reach
// the copy before it. The emulator models both exactly: its Free and
// CopyHtoD queue operations of their own behind the launches, and it
// treats a free that does not wait, of memory that a queued launch names,
// as the illegal address it would be on a GPU (see emu.go).
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
