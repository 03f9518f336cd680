//go:build cudaemu

package cuda

/*
#cgo CFLAGS: -I${SRCDIR}/../kernels
#cgo CXXFLAGS: -std=c++20 -O2 -I${SRCDIR}/../kernels
#cgo LDFLAGS: -pthread -lstdc++
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "emu_api.h"

// launch passes the argument slots to lora_emu_launch as kernelParams.
static int launch(const char* name, unsigned gx, unsigned gy, unsigned gz,
                  unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                  const uint64_t* slots, int n) {
	uint64_t vals[16];
	void* params[16];
	for (int i = 0; i < n; i++) {
		vals[i] = slots[i];
		params[i] = &vals[i];
	}
	return lora_emu_launch(name, gx, gy, gz, bx, by, bz, shmem, params);
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Name is the name of this build's backend.
const Name = "cudaemu"

var (
	mu    sync.Mutex             // one stream: launches run one at a time
	names = map[string]*C.char{} // kernel names as C strings, kept for the process
)

// Init prepares the device. The emulator needs nothing.
func Init() error { return nil }

// DeviceName describes the device.
func DeviceName() string {
	return fmt.Sprintf("CUDA emulation on the CPU (%d cores)", runtime.NumCPU())
}

// PeakBandwidth returns the device's nominal memory bandwidth: unknown (0)
// for the emulator.
func PeakBandwidth() float64 { return 0 }

// L2Bytes returns the size of the device's L2 cache: none (0) for the
// emulator, whose memory is the host's.
func L2Bytes() int { return 0 }

// Alloc returns bytes of device memory, uninitialised.
func Alloc(bytes int64) (Ptr, error) {
	if bytes < 1 {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes", bytes)
	}
	p := C.malloc(C.size_t(bytes))
	if p == nil {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes: out of memory", bytes)
	}
	return Ptr(uintptr(p)), nil
}

// Free releases memory from Alloc.
func Free(p Ptr) {
	if p != 0 {
		C.free(ptr(p))
	}
}

// ptr converts a device address of the emulator, the bits of a C pointer,
// back into that pointer. The memory is C's, never moved or collected.
func ptr(p Ptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// Memset32 sets count 32-bit words at p to v.
func Memset32(p Ptr, v uint32, count int64) error {
	mu.Lock()
	defer mu.Unlock()
	s := unsafe.Slice((*uint32)(ptr(p)), count)
	for i := range s {
		s[i] = v
	}
	return nil
}

// CopyHtoD copies bytes from host memory at src to the device.
func CopyHtoD(dst Ptr, src unsafe.Pointer, bytes int64) error {
	mu.Lock()
	defer mu.Unlock()
	C.memcpy(ptr(dst), src, C.size_t(bytes))
	return nil
}

// CopyDtoH waits for all queued work, then copies bytes from the device to
// host memory at dst.
func CopyDtoH(dst unsafe.Pointer, src Ptr, bytes int64) error {
	mu.Lock()
	defer mu.Unlock()
	C.memcpy(dst, ptr(src), C.size_t(bytes))
	return nil
}

// Launch runs kernel on grid×block threads with shmem bytes of dynamic
// shared memory and the parameters in a. The emulator runs it to completion
// before returning.
func Launch(kernel string, grid, block Dim3, shmem int, a *Args) error {
	if err := checkLaunch(kernel, grid, block, shmem, a); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	cname, ok := names[kernel]
	if !ok {
		cname = C.CString(kernel)
		names[kernel] = cname
	}
	var slots [maxArgs]C.uint64_t
	for i := range a.n {
		slots[i] = C.uint64_t(a.slot[i])
	}
	rc := C.launch(cname, C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z),
		C.uint(block.X), C.uint(block.Y), C.uint(block.Z), C.uint(shmem), &slots[0], C.int(a.n))
	if rc != C.LORA_EMU_OK {
		return fmt.Errorf("cuda: launch %s: %s", kernel, emuError(rc))
	}
	return nil
}

func emuError(rc C.int) string {
	switch rc {
	case C.LORA_EMU_ERR_UNKNOWN_KERNEL:
		return "no such kernel"
	case C.LORA_EMU_ERR_BLOCK:
		return "invalid block size"
	case C.LORA_EMU_ERR_GRID:
		return "invalid grid size"
	case C.LORA_EMU_ERR_SHMEM:
		return "too much shared memory"
	case C.LORA_EMU_ERR_THREADS:
		return "cannot start the emulator's threads"
	case C.LORA_EMU_ERR_ARGS:
		return "invalid arguments"
	}
	return fmt.Sprintf("emulator error %d", int(rc))
}

// KernelArgs returns the number of parameters of kernel, or −1 if the
// module has no such kernel.
func KernelArgs(kernel string) int {
	c := C.CString(kernel)
	defer C.free(unsafe.Pointer(c))
	return int(C.lora_emu_kernel_nargs(c))
}

// Sync waits for all queued work; the emulator has none.
func Sync() error { return nil }

// Event marks a point in the stream, for timing.
type Event struct{ t time.Time }

// NewEvent returns an unrecorded event.
func NewEvent() (*Event, error) { return &Event{}, nil }

// Record marks the event at the current end of the stream.
func (e *Event) Record() error { e.t = time.Now(); return nil }

// Since waits for end and returns the seconds between e and end.
func (e *Event) Since(start *Event) (float64, error) { return e.t.Sub(start.t).Seconds(), nil }

// Destroy releases the event.
func (e *Event) Destroy() {}
