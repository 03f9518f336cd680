//go:build !cuda && !cudaemu

package cuda

import (
	"errors"
	"unsafe"
)

// This file gives the default build, which has no GPU backend, the same API
// as driver.go (-tags cuda) and emu.go (-tags cudaemu), so that the package
// documents itself and compiles everywhere. Every function that would use a
// device returns errNoBackend.

// Name is the name of this build's backend: "none" without a GPU backend,
// "cuda" with -tags cuda, "cudaemu" with -tags cudaemu.
const Name = "none"

var errNoBackend = errors.New("cuda: no GPU backend in this build: build with -tags cuda or cudaemu")

// Init opens the device: GPU 0, or the GPU whose index is in the environment
// variable LORA_DEVICE, with -tags cuda; nothing with -tags cudaemu. It runs
// once; later calls return the first call's error.
func Init() error { return errNoBackend }

// DeviceName describes the device.
func DeviceName() string { return "no device: " + errNoBackend.Error() }

// PeakBandwidth returns the device's nominal memory bandwidth in bytes per
// second (0 if unknown, as on the emulator).
func PeakBandwidth() float64 { return 0 }

// Properties returns the properties of the device that decide how launches
// fill it; zero fields are unknown, as on the emulator.
func Properties() Props { return Props{} }

// L2Bytes returns the size of the device's L2 cache (0 if unknown, as on the
// emulator).
func L2Bytes() int { return 0 }

// Alloc returns bytes of device memory, uninitialised. Out of device memory
// (on the emulator: more than the machine's physical memory) is an error
// that says so.
func Alloc(bytes int64) (Ptr, error) { return 0, errNoBackend }

// Free releases memory from Alloc in stream order, without waiting for the
// stream (see the package documentation, Freeing memory); Free(0) does
// nothing. The work queued before it still uses the memory; nothing queued
// after it may. A failed Free is a device fault (see Fault): Free returns
// it, and so does every later call.
func Free(p Ptr) error {
	if p == 0 {
		return nil
	}
	return errNoBackend
}

// Memset32 sets count 32-bit words at p to v, in stream order.
func Memset32(p Ptr, v uint32, count int64) error { return errNoBackend }

// CopyHtoD copies bytes from host memory at src to the device, after the
// work queued before it; src may be reused when it returns. A small copy
// returns without waiting for the stream.
func CopyHtoD(dst Ptr, src unsafe.Pointer, bytes int64) error { return errNoBackend }

// CopyDtoH waits for all queued work, then copies bytes from the device to
// host memory at dst. A fault of earlier work is reported here.
func CopyDtoH(dst unsafe.Pointer, src Ptr, bytes int64) error { return errNoBackend }

// Launch enqueues kernel on grid×block threads with shmem bytes of dynamic
// shared memory and the parameters in a, and returns without waiting (the
// emulator runs the kernel before returning). The arguments must match the
// kernel's parameters (kernels.Params), and the geometry CUDA's limits.
func Launch(kernel string, grid, block Dim3, shmem int, a *Args) error {
	if err := checkLaunch(kernel, grid, block, shmem, a); err != nil {
		return err
	}
	return errNoBackend
}

// Sync waits for all queued work and reports a fault of any of it.
func Sync() error { return errNoBackend }

// Event marks a point in the stream, for timing kernels.
type Event struct{}

// NewEvent returns an unrecorded event.
func NewEvent() (*Event, error) { return nil, errNoBackend }

// Record marks the event at the current end of the stream.
func (e *Event) Record() error { return errNoBackend }

// Since waits for e and returns the seconds of stream time between start
// and e.
func (e *Event) Since(start *Event) (float64, error) { return 0, errNoBackend }

// Destroy releases the event.
func (e *Event) Destroy() {}
