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

// launch passes the n argument slots to lora_emu_launch as kernelParams.
static int launch(const char* name, unsigned gx, unsigned gy, unsigned gz,
                  unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                  const uint64_t* slots, int n) {
	uint64_t vals[16];
	void* params[16];
	if (n < 0 || n > 16) return LORA_EMU_ERR_NARGS;
	for (int i = 0; i < n; i++) {
		vals[i] = slots[i];
		params[i] = &vals[i];
	}
	return lora_emu_launch(name, gx, gy, gz, bx, by, bz, shmem, params, n);
}

// lora_emu_mma_exact is defined by emu.h: how the mma.sync of later
// launches sum (see emuMMAExact).
int lora_emu_mma_exact(int exact);

// fault returns the emulator's fault, waiting for the queued launches when
// wait is set; msg receives its description.
static int fault(int wait, char* msg, int len) {
	return wait ? lora_emu_sync(msg, len) : lora_emu_poll(msg, len);
}
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/golora/lora/internal/sysmem"
)

// Name is the name of this build's backend.
const Name = "cudaemu"

// The emulator runs launches on a worker thread, in order, as one CUDA
// stream does: Launch checks its arguments and returns at once; a fault
// inside a kernel (a warp collective whose mask names a lane that returned,
// a deadlock) is reported by the next call that waits for the stream: Sync,
// CopyDtoH, Memset32, an event, or a Launch after the kernel ran.
//
// The emulator's device memory is host memory from C.malloc. It keeps a
// table of the live allocations and checks every device address it is given
// against it, a launch's pointer arguments included: an address outside
// every allocation (freed memory, a stray offset) is a device fault, as an
// illegal address is on a GPU, and sticky like one. No memory is touched
// through such an address.
//
// Free and CopyHtoD are stream-ordered, as cuMemFreeAsync and the driver's
// asynchronous copies are, and return without waiting: each queues an
// operation of its own (emu_ops.cc) behind the launches queued before it.
// Free takes the allocation out of the table at once, so that whatever is
// queued after it and names the memory faults; the launches queued before
// it still read the memory, and when the stream reaches the free it fills
// the memory with 0xffa5a5a5 (a NaN), so that a kernel that reads it through
// an address held in device memory computes NaN. The memory goes back to C
// once the host has waited for the stream past the free (drain).
//
// A free that does not wait for the stream (freeNow, what cuMemFree would be
// without its implicit synchronisation) is a fault when a launch queued
// since the host last waited for the stream names the memory: that launch
// may still read it. The emulator reports it at the free, whether or not
// the kernel happens to have run already, so a use after free by a queued
// kernel is caught every time, not by timing.
var (
	mu     sync.Mutex             // guards what follows; launches are queued one at a time
	names  = map[string]*C.char{} // kernel names as C strings, kept for the process
	spans  []span                 // live allocations, sorted by start
	queued uint64                 // operations queued so far: the last one's sequence number
	freed  []freedSpan            // freed allocations whose memory waits for a drain
	held   int64                  // bytes in freed
	named  = map[uint64]use{}     // allocation start → the last launch queued that names it
)

// freedSpan is a freed allocation and the sequence number of its release.
type freedSpan struct {
	span
	seq uint64
}

// use is a launch that names an allocation: its kernel and sequence number.
type use struct {
	kernel string
	seq    uint64
}

// heldLimit bounds the freed memory that waits for a drain: Alloc drains
// the stream first when more is held.
const heldLimit = 256 << 20

// span is one live allocation: [start, start+size).
type span struct{ start, size uint64 }

// Init prepares the device. The emulator needs nothing, but a device that
// faulted stays faulted.
func Init() error { return faulted("Init") }

// DeviceName describes the device.
func DeviceName() string {
	return fmt.Sprintf("CUDA emulation on the CPU (%d cores)", runtime.NumCPU())
}

// PeakBandwidth returns the device's nominal memory bandwidth: unknown (0)
// for the emulator.
func PeakBandwidth() float64 { return 0 }

// Properties returns the properties of the device that decide how launches
// fill it: all unknown (zero) for the emulator.
func Properties() Props { return Props{} }

// L2Bytes returns the size of the device's L2 cache: none (0) for the
// emulator, whose memory is the host's.
func L2Bytes() int { return 0 }

// find returns the index of the live allocation that holds [p, p+bytes), or
// −1. Called with mu held.
func find(p Ptr, bytes int64) int {
	a := uint64(p)
	i := sort.Search(len(spans), func(i int) bool { return spans[i].start > a }) - 1
	if i < 0 {
		return -1
	}
	s := spans[i]
	if a-s.start > s.size || uint64(bytes) > s.size-(a-s.start) {
		return -1
	}
	return i
}

// illegal records and returns the fault of an access through an address
// outside device memory. Called with mu held.
func illegal(op string, p Ptr, bytes int64) error {
	return setFault(fmt.Errorf("cuda: %s: illegal address: %d bytes at %#x lie outside every live allocation (emulated CUDA_ERROR_ILLEGAL_ADDRESS)", op, bytes, uint64(p)))
}

// wait waits for the queued launches when block is set, and returns the
// first fault of a kernel, recorded as the device's fault, or nil. A wait
// that blocks is a drain: the memory of the frees queued before it goes
// back to C, and the launches queued before it no longer hold their memory.
func wait(op string, block bool) error {
	var target uint64
	if block {
		mu.Lock()
		target = queued
		mu.Unlock()
	}
	var buf [1024]C.char
	w := C.int(0)
	if block {
		w = 1
	}
	rc := C.fault(w, &buf[0], C.int(len(buf)))
	if block {
		// Every operation up to target has run (or been skipped after a
		// fault): none of them touches memory any more.
		mu.Lock()
		drained(target)
		mu.Unlock()
	}
	if rc == C.LORA_EMU_OK {
		return nil
	}
	return setFault(fmt.Errorf("cuda: %s: kernel fault: %s (emulated CUDA_ERROR_LAUNCH_FAILED)", op, C.GoString(&buf[0])))
}

// drained returns to C the memory of the frees up to sequence number
// target, and forgets the uses of launches up to it. Called with mu held.
func drained(target uint64) {
	kept := freed[:0]
	for _, f := range freed {
		if f.seq <= target {
			C.free(ptr(Ptr(f.start)))
			held -= int64(f.size)
		} else {
			kept = append(kept, f)
		}
	}
	clear(freed[len(kept):])
	freed = kept
	for p, u := range named {
		if u.seq <= target {
			delete(named, p)
		}
	}
}

// Alloc returns bytes of device memory, uninitialised. The emulator refuses
// an allocation larger than the machine's physical memory. When more than
// heldLimit bytes of freed memory wait for the stream, or C has no memory
// left while some do, Alloc first waits for the stream to return them.
func Alloc(bytes int64) (Ptr, error) {
	if err := faulted("Alloc"); err != nil {
		return 0, err
	}
	if bytes < 1 {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes", bytes)
	}
	if err := sysmem.Check("the emulator's device memory", bytes); err != nil {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes: %w: %v", bytes, ErrOutOfMemory, err)
	}
	if uint64(bytes) > uint64(^C.size_t(0)) {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes: %w", bytes, ErrOutOfMemory)
	}
	mu.Lock()
	full := held > heldLimit
	mu.Unlock()
	if full {
		if err := wait("Alloc", true); err != nil {
			return 0, err
		}
	}
	p := C.malloc(C.size_t(bytes))
	if p == nil {
		mu.Lock()
		some := held > 0
		mu.Unlock()
		if some {
			if err := wait("Alloc", true); err != nil {
				return 0, err
			}
			p = C.malloc(C.size_t(bytes))
		}
	}
	if p == nil {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes (%s): %w: malloc failed", bytes, sysmem.Bytes(bytes), ErrOutOfMemory)
	}
	mu.Lock()
	defer mu.Unlock()
	s := span{uint64(uintptr(p)), uint64(bytes)}
	i := sort.Search(len(spans), func(i int) bool { return spans[i].start > s.start })
	spans = append(spans, span{})
	copy(spans[i+1:], spans[i:])
	spans[i] = s
	return Ptr(s.start), nil
}

// Free releases memory from Alloc in stream order and returns without
// waiting; Free(0) does nothing. The launches queued before it still read
// the memory; whatever is queued after it and names the memory faults. An
// address that is not the start of a live allocation (a double free) is a
// device fault.
func Free(p Ptr) error { return free(p, true) }

// freeNow is Free without the stream order: the memory is released at
// once, as cuMemFree would release it if it did not wait for the work
// queued before it. A launch queued since the host last waited for the
// stream that names the memory may still read it: a device fault, reported
// here. Only the tests call it, to show that such a free is caught.
func freeNow(p Ptr) error { return free(p, false) }

// free is Free, in stream order when ordered is set.
func free(p Ptr, ordered bool) error {
	if p == 0 {
		return nil
	}
	if err := faulted("Free"); err != nil {
		return err
	}
	if err := wait("Free", false); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	i := find(p, 0)
	if i < 0 || spans[i].start != uint64(p) {
		return setFault(fmt.Errorf("cuda: Free of %#x: not the start of a live allocation (emulated CUDA_ERROR_INVALID_VALUE)", uint64(p)))
	}
	s := spans[i]
	if u, ok := named[s.start]; ok && !ordered {
		return setFault(fmt.Errorf("cuda: Free of %#x: illegal address: %s (launch %d), queued before the free and not waited for, reads the %d bytes freed (emulated CUDA_ERROR_ILLEGAL_ADDRESS)",
			uint64(p), u.kernel, u.seq, s.size))
	}
	spans = append(spans[:i], spans[i+1:]...)
	delete(named, s.start)
	if !ordered {
		// Released now, though no queued launch names it: kept until the
		// next drain all the same, so that nothing reads memory C reused.
		C.memset(ptr(p), 0xa5, C.size_t(s.size))
		freed = append(freed, freedSpan{s, queued})
		held += int64(s.size)
		return nil
	}
	var a Args
	a.Ptr(p).Int64(int64(s.size))
	if err := emuOp("emuop_release", &a); err != nil {
		return setFault(fmt.Errorf("cuda: Free of %#x: %w", uint64(p), err))
	}
	freed = append(freed, freedSpan{s, queued})
	held += int64(s.size)
	return nil
}

// emuOp queues one of the emulator's own operations (emu_ops.cc) on one
// thread. Called with mu held.
func emuOp(kernel string, a *Args) error {
	return emuLaunch(kernel, Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 1, Y: 1, Z: 1}, 0, a)
}

// ptr converts a device address of the emulator, the bits of a C pointer,
// back into that pointer. The memory is C's, never moved or collected.
func ptr(p Ptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// Memset32 sets count 32-bit words at p to v.
func Memset32(p Ptr, v uint32, count int64) error {
	if err := faulted("memset"); err != nil {
		return err
	}
	if err := wait("memset", true); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if count < 0 || count > 1<<61 || find(p, 4*count) < 0 {
		return illegal("memset", p, 4*count)
	}
	s := unsafe.Slice((*uint32)(ptr(p)), count)
	for i := range s {
		s[i] = v
	}
	return nil
}

// CopyHtoD copies bytes from host memory at src to the device in stream
// order, after the work queued before it, and returns without waiting: it
// takes a copy of the bytes, so src may be reused when it returns.
func CopyHtoD(dst Ptr, src unsafe.Pointer, bytes int64) error {
	if err := faulted("copy to device"); err != nil {
		return err
	}
	if err := wait("copy to device", false); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if bytes < 0 || find(dst, bytes) < 0 {
		return illegal("copy to device", dst, bytes)
	}
	if bytes == 0 {
		return nil
	}
	tmp := C.malloc(C.size_t(bytes))
	if tmp == nil {
		return fmt.Errorf("cuda: copy to device of %d bytes: the emulator's copy of them: malloc failed", bytes)
	}
	C.memcpy(tmp, src, C.size_t(bytes))
	var a Args
	a.Ptr(dst).Int64(int64(uintptr(tmp))).Int64(bytes)
	if err := emuOp("emuop_copy", &a); err != nil {
		C.free(tmp)
		return fmt.Errorf("cuda: copy to device: %w", err)
	}
	return nil
}

// CopyDtoH waits for all queued work, then copies bytes from the device to
// host memory at dst.
func CopyDtoH(dst unsafe.Pointer, src Ptr, bytes int64) error {
	if err := faulted("copy to host"); err != nil {
		return err
	}
	if err := wait("copy to host", true); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if bytes < 0 || find(src, bytes) < 0 {
		return illegal("copy to host", src, bytes)
	}
	C.memcpy(dst, ptr(src), C.size_t(bytes))
	return nil
}

// Launch queues kernel on grid×block threads with shmem bytes of dynamic
// shared memory and the parameters in a, and returns without waiting for
// it. Invalid arguments are reported at once; a fault inside the kernel by
// a later call. A pointer argument outside device memory is a fault, and
// the kernel does not run.
func Launch(kernel string, grid, block Dim3, shmem int, a *Args) error {
	if err := checkLaunch(kernel, grid, block, shmem, a); err != nil {
		return err
	}
	if err := faulted("launch " + kernel); err != nil {
		return err
	}
	if err := wait("launch "+kernel, false); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range a.n {
		if a.ptrs&(1<<i) != 0 && a.slot[i] != 0 && find(Ptr(a.slot[i]), 0) < 0 {
			return illegal(fmt.Sprintf("launch %s: argument %d", kernel, i), Ptr(a.slot[i]), 0)
		}
	}
	return emuLaunch(kernel, grid, block, shmem, a)
}

// emuLaunch hands the launch to the emulator and notes the allocations it
// names. Called with mu held.
func emuLaunch(kernel string, grid, block Dim3, shmem int, a *Args) error {
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
		if rc == C.LORA_EMU_ERR_NARGS {
			return fmt.Errorf("cuda: launch %s: %s packed, the kernel takes %d", kernel, plural(a.n, "argument"), emuKernelArgs(kernel))
		}
		return fmt.Errorf("cuda: launch %s: %s", kernel, emuError(rc))
	}
	queued++
	for i := range a.n {
		if a.ptrs&(1<<i) != 0 {
			if j := find(Ptr(a.slot[i]), 0); j >= 0 {
				named[spans[j].start] = use{kernel, queued}
			}
		}
	}
	if traceFile != nil {
		trace(kernel, grid, block, shmem, a)
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
	case C.LORA_EMU_ERR_KERNEL:
		return "kernel fault"
	}
	return fmt.Sprintf("emulator error %d", int(rc))
}

// emuKernelArgs returns the number of parameters of kernel as its signature
// declares it, or −1 if the emulator has no such kernel.
func emuKernelArgs(kernel string) int {
	c := C.CString(kernel)
	defer C.free(unsafe.Pointer(c))
	return int(C.lora_emu_kernel_nargs(c))
}

// emuOwn reports whether kernel is one of the emulator's own, not of
// lora.fatbin: its test kernels (emutest_*, emu_kernels.cc and
// mma_kernels.cc) and its stream operations (emuop_*, emu_ops.cc).
func emuOwn(kernel string) bool {
	return strings.HasPrefix(kernel, "emutest_") || strings.HasPrefix(kernel, "emuop_")
}

// emuKernels returns the names of the emulator's kernels.
func emuKernels() []string {
	n := int(C.lora_emu_kernel_count())
	s := make([]string, n)
	for i := range s {
		s[i] = C.GoString(C.lora_emu_kernel_name(C.int(i)))
	}
	return s
}

// Sync waits for all queued work. It reports the device's fault, if any.
func Sync() error {
	if err := faulted("Sync"); err != nil {
		return err
	}
	return wait("Sync", true)
}

// Event marks a point in the stream, for timing.
type Event struct{ t time.Time }

// NewEvent returns an unrecorded event.
func NewEvent() (*Event, error) {
	if err := faulted("event"); err != nil {
		return nil, err
	}
	return &Event{}, nil
}

// Record marks the event at the current end of the stream: on the
// emulator, it waits for the queued work and takes the time.
func (e *Event) Record() error {
	if err := faulted("event"); err != nil {
		return err
	}
	if err := wait("event", true); err != nil {
		return err
	}
	e.t = time.Now()
	return nil
}

// Since waits for e and returns the seconds between start and e.
func (e *Event) Since(start *Event) (float64, error) {
	if err := faulted("event"); err != nil {
		return 0, err
	}
	return e.t.Sub(start.t).Seconds(), nil
}

// Destroy releases the event.
func (e *Event) Destroy() {}

// emuSeed returns the seed of the emulator's order of blocks and threads:
// LORA_EMU_SEED when set, otherwise one drawn for the process. A fault's
// description names it, so that the order can be replayed.
func emuSeed() uint64 { return uint64(C.lora_emu_seed()) }

// emuMMAExact sets how the emulated mma.sync of the launches queued from
// now on sum each element of D = A·B + C: exactly, rounded once to float32,
// when exact is set; otherwise, the default, in the model of the tensor
// cores' arithmetic that kernels/emu.h describes (products exact, aligned
// to the largest exponent of each group of terms with the bits below
// float32's precision truncated, the sum normalised toward zero), which is
// less accurate than the exact sum. LORA_EMU_MMA=exact in the environment
// makes the exact sum the process's default. It returns the previous
// setting.
func emuMMAExact(exact bool) bool {
	e := C.int(0)
	if exact {
		e = 1
	}
	return C.lora_emu_mma_exact(e) != 0
}

// With LORA_EMU_TRACE set to a file name, the emulator appends one line per
// distinct launch of a kernel of lora.fatbin to it, for the sanitizer harness (kernels/sanitize) to
// replay on buffers of the same sizes: the kernel, grid, block and dynamic
// shared memory, then each argument, as v<hex> for a value or
// p<allocation size>+<offset>@<allocation> for a pointer into device memory.
var (
	traceFile *os.File
	traceSeen = map[string]bool{}
)

func init() {
	if name := os.Getenv("LORA_EMU_TRACE"); name != "" {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cuda: LORA_EMU_TRACE: %v\n", err)
			return
		}
		traceFile = f
	}
}

// trace writes the launch to traceFile unless a launch of the same kernel,
// geometry, values and allocation sizes was written before, or the kernel is
// one of the emulator's own (see emuOwn), which the harness does not have.
// Called with mu held.
func trace(kernel string, grid, block Dim3, shmem int, a *Args) {
	if emuOwn(kernel) {
		return
	}
	var key, line strings.Builder
	fmt.Fprintf(&key, "%s %d %d %d %d %d %d %d %d", kernel, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, shmem, a.n)
	line.WriteString(key.String())
	for i := range a.n {
		v := a.slot[i]
		if a.ptrs&(1<<i) != 0 && v != 0 {
			if j := find(Ptr(v), 0); j >= 0 {
				s := spans[j]
				fmt.Fprintf(&key, " p%d+%d", s.size, v-s.start)
				fmt.Fprintf(&line, " p%d+%d@%x", s.size, v-s.start, s.start)
				continue
			}
		}
		fmt.Fprintf(&key, " v%x", v)
		fmt.Fprintf(&line, " v%x", v)
	}
	if traceSeen[key.String()] {
		return
	}
	traceSeen[key.String()] = true
	fmt.Fprintln(traceFile, line.String())
}
