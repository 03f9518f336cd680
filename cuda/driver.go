//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#cgo linux CFLAGS: -I/usr/local/cuda/include
#cgo linux LDFLAGS: -L/usr/local/cuda/lib64
#include <stdlib.h>
#include <cuda.h>

// lora_slots holds a launch's parameters, one 8-byte slot each (see Args).
typedef struct { unsigned long long w[16]; } lora_slots;

// lora_launch enqueues f with the first n slots of s as its parameters on
// the default stream. The slots come by value and the driver reads them
// before cuLaunchKernel returns, so the parameters and the pointers to
// them live on this C stack: a launch allocates nothing, in Go or in C,
// and hands cgo no Go pointer.
static CUresult lora_launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                            unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                            lora_slots s, int n) {
	void *params[16];
	if (n < 0 || n > 16) return CUDA_ERROR_INVALID_VALUE;
	for (int i = 0; i < n; i++) params[i] = &s.w[i];
	return cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, NULL, params, NULL);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/golora/lora/internal/sysmem"
	"github.com/golora/lora/kernels"
)

// Name is the name of this build's backend.
const Name = "cuda"

var (
	mu      sync.Mutex // serialises driver calls and the stream
	once    sync.Once
	initErr error
	ctx     cu.CUContext
	mod     C.CUmodule
	devName string
	funcs   = map[string]C.CUfunction{}
	stream  cu.Stream // the zero Stream: the context's default stream
	ordinal int
	peakBW  float64 // nominal memory bandwidth, bytes/s
	l2Bytes int
	props   Props
	// asyncFree: Free queues cuMemFreeAsync on the stream (the device
	// supports stream-ordered allocation, and LORA_FREE is not "sync");
	// otherwise Free waits for the stream, then calls cuMemFree.
	asyncFree bool
	// freeQueued: a stream-ordered free was queued since the host last
	// waited for the stream; its memory may not be free yet.
	freeQueued bool
)

// Init opens GPU 0, or the GPU whose index is in the environment variable
// LORA_DEVICE, retains its primary context and loads the kernels. It runs
// once; later calls return the first call's error.
func Init() error {
	once.Do(func() { initErr = open() })
	return initErr
}

func open() error {
	if s := os.Getenv("LORA_DEVICE"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return fmt.Errorf("cuda: LORA_DEVICE=%q is not a device index", s)
		}
		ordinal = v
	}
	n, err := cu.NumDevices()
	if err != nil {
		return fmt.Errorf("cuda: counting devices: %v", err)
	}
	if ordinal >= n {
		return fmt.Errorf("cuda: device %d requested, %d present", ordinal, n)
	}
	dev, err := cu.GetDevice(ordinal)
	if err != nil {
		return fmt.Errorf("cuda: device %d: %v", ordinal, err)
	}
	if devName, err = dev.Name(); err != nil {
		return fmt.Errorf("cuda: device %d: %v", ordinal, err)
	}
	// Nominal bandwidth: double data rate × memory clock × bus width.
	if clock, err := dev.Attribute(cu.MemoryClockRate); err == nil {
		if width, err := dev.Attribute(cu.GlobalMemoryBusWidth); err == nil {
			peakBW = 2 * float64(clock) * 1e3 * float64(width) / 8
		}
	}
	if l2, err := dev.Attribute(cu.L2CacheSize); err == nil {
		l2Bytes = l2
	}
	props = readProps(dev)
	var pools C.int
	if C.cuDeviceGetAttribute(&pools, C.CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, C.CUdevice(dev)) == C.CUDA_SUCCESS {
		asyncFree = pools != 0 && os.Getenv("LORA_FREE") != "sync"
	}
	if ctx, err = dev.RetainPrimaryCtx(); err != nil {
		return fmt.Errorf("cuda: device %d: primary context: %v", ordinal, err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cu.SetCurrentContext(ctx); err != nil {
		return fmt.Errorf("cuda: device %d: %v", ordinal, err)
	}
	image := C.CString(kernels.Fatbin)
	defer C.free(unsafe.Pointer(image))
	if err := driverError(C.cuModuleLoadData(&mod, unsafe.Pointer(image))); err != nil {
		return fmt.Errorf("cuda: loading lora.fatbin on %s: %v", devName, err)
	}
	return nil
}

// driverError returns the result of a driver call made here through cgo as
// gorgonia.org/cu returns its own calls' results: nil for success, else the
// same error value as cu's, so that errors.Is(err, cu.IllegalAddress) and
// sticky see both alike.
func driverError(r C.CUresult) error { return resultAs(cu.Success, int(r)) }

// resultAs converts the driver's result code r to the type of success, cu's
// unexported result type, which is an int and an error.
func resultAs[E interface {
	~int
	error
}](success E, r int) error {
	if E(r) == success {
		return nil
	}
	return E(r)
}

// opName joins an operation and the name of what it acts on, "launch" and
// "lora_axpy" into "launch lora_axpy". Launch calls it only for an error:
// building the string on every launch would allocate.
func opName(op, name string) string {
	if name == "" {
		return op
	}
	return op + " " + name
}

// enter initialises the device if needed, refuses op once the device has
// faulted, takes the lock, locks the goroutine to its thread and makes the
// context current there. The returned function undoes it.
func enter(op string) (func(), error) { return enterOn(op, "") }

// enterOn is enter for op on the named kernel, "launch" on "lora_axpy"
// for example: the two are joined only for an error, so that a launch
// allocates nothing.
func enterOn(op, name string) (func(), error) {
	if err := Init(); err != nil {
		return nil, err
	}
	mu.Lock()
	if Fault() != nil {
		mu.Unlock()
		return nil, faulted(opName(op, name))
	}
	runtime.LockOSThread()
	leave := func() {
		runtime.UnlockOSThread()
		mu.Unlock()
	}
	if err := cu.SetCurrentContext(ctx); err != nil {
		leave()
		return nil, fail(opName(op, name), fmt.Errorf("making the context current: %w", err))
	}
	return leave, nil
}

// sticky reports whether err is one of the driver's errors after which the
// context is unusable: every later call of the process fails with it.
func sticky(err error) bool {
	for _, e := range []error{cu.IllegalAddress, cu.LaunchFailed, cu.HardwareStackError,
		cu.IllegalInstruction, cu.MisalignedAddress, cu.InvalidAddressSpace, cu.InvalidPc,
		cu.Assert, cu.EccUncorrectable, cu.NvlinkUncorrectable, cu.LaunchTimeout,
		cu.ContextIsDestroyed, cu.Deinitialized, cu.Unknown} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// fail returns the error of op, recording it as the device's fault when
// the driver says the context is lost.
func fail(op string, err error) error {
	err = fmt.Errorf("cuda: %s: %w", op, err)
	if sticky(err) {
		return setFault(err)
	}
	return err
}

// DeviceName describes the device.
func DeviceName() string {
	if err := Init(); err != nil {
		return "no device: " + err.Error()
	}
	return fmt.Sprintf("%s (device %d)", devName, ordinal)
}

// PeakBandwidth returns the device's nominal memory bandwidth in bytes per
// second (0 if unknown).
func PeakBandwidth() float64 {
	if Init() != nil {
		return 0
	}
	return peakBW
}

// Properties returns the properties of the device that decide how launches
// fill it; zero fields are unknown.
func Properties() Props {
	if Init() != nil {
		return Props{}
	}
	return props
}

// readProps reads dev's properties; an attribute the driver does not give
// stays zero.
func readProps(dev cu.Device) Props {
	get := func(a cu.DeviceAttribute) int {
		v, err := dev.Attribute(a)
		if err != nil {
			return 0
		}
		return v
	}
	p := Props{
		SMs:          get(cu.MultiprocessorCount),
		SharedPerSM:  get(cu.MaxSharedMemoryPerMultiprocessor),
		ThreadsPerSM: get(cu.MaxThreadsPerMultiprocessor),
		RegsPerSM:    get(cu.MaxRegistersPerMultiprocessor),
	}
	major, minor := get(cu.ComputeCapabilityMajor), get(cu.ComputeCapabilityMinor)
	if major > 0 {
		p.Arch = 10*major + minor
	}
	p.BlocksPerSM = blocksPerSM(major, minor)
	// Nominal fp32 rate: two FLOP per fused multiply-add per lane per clock.
	p.FLOPs = 2 * float64(fp32PerSM(major, minor)) * float64(p.SMs) * float64(get(cu.ClockRate)) * 1e3
	return p
}

// L2Bytes returns the size of the device's L2 cache (0 if unknown).
func L2Bytes() int {
	if Init() != nil {
		return 0
	}
	return l2Bytes
}

// Alloc returns bytes of device memory, uninitialised. When the device
// is out of memory while frees are queued, Alloc waits for the stream,
// which returns their memory, and tries once more.
func Alloc(bytes int64) (Ptr, error) {
	if bytes < 1 {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes", bytes)
	}
	leave, err := enter("Alloc")
	if err != nil {
		return 0, err
	}
	defer leave()
	p, err := alloc(bytes)
	if errors.Is(err, cu.OutOfMemory) && freeQueued {
		if err := cu.Synchronize(); err != nil {
			return 0, fail(fmt.Sprintf("Alloc of %d bytes", bytes), err)
		}
		freeQueued = false
		p, err = alloc(bytes)
	}
	if errors.Is(err, cu.OutOfMemory) {
		free, total, _ := cu.MemInfo()
		return 0, fmt.Errorf("cuda: Alloc of %d bytes (%s): %w, %s free of %s on %s (%v)",
			bytes, sysmem.Bytes(bytes), ErrOutOfMemory, sysmem.Bytes(free), sysmem.Bytes(total), devName, err)
	}
	if err != nil {
		return 0, fail(fmt.Sprintf("Alloc of %d bytes", bytes), err)
	}
	return Ptr(p), nil
}

// alloc takes bytes of device memory: from the device's default pool of
// the stream-ordered allocator (cuMemAllocAsync on the stream) where Free
// frees in stream order, so that every cuMemFreeAsync frees memory of
// cuMemAllocAsync, the pairing the driver documents; with cuMemAlloc
// elsewhere. Either is usable by all work queued after it.
func alloc(bytes int64) (cu.DevicePtr, error) {
	if !asyncFree {
		return cu.MemAlloc(bytes)
	}
	var p C.CUdeviceptr
	if err := driverError(C.cuMemAllocAsync(&p, C.size_t(bytes), C.CUstream(nil))); err != nil {
		return 0, err
	}
	return cu.DevicePtr(p), nil
}

// Free releases memory from Alloc in stream order, without waiting for the
// stream; Free(0) does nothing. The kernels and copies queued before it
// still use the memory; nothing queued after it may. It queues
// cuMemFreeAsync on the stream, or, where the device has no stream-ordered
// allocator (or LORA_FREE=sync, or the driver refused cuMemFreeAsync once),
// waits for the stream and calls cuMemFree.
// A failed Free leaves the state of device memory unknown, so it is a device
// fault: Free returns it, and so does every later call of the package.
func Free(p Ptr) error {
	if p == 0 {
		return nil
	}
	leave, err := enter("Free")
	if err != nil {
		return err
	}
	defer leave()
	if asyncFree {
		err := driverError(C.cuMemFreeAsync(C.CUdeviceptr(p), C.CUstream(nil)))
		if err == nil {
			freeQueued = true
			return nil
		}
		if sticky(err) {
			return fail(fmt.Sprintf("Free of %#x", uint64(p)), err)
		}
		// A driver that refuses to free memory of cuMemAlloc in stream
		// order: from now on, the wait and cuMemFree below (which fail
		// too if p itself is at fault).
		asyncFree = false
	}
	if err := cu.Synchronize(); err != nil {
		return fail(fmt.Sprintf("Free of %#x", uint64(p)), err)
	}
	if err := cu.MemFree(cu.DevicePtr(p)); err != nil {
		return setFault(fmt.Errorf("cuda: Free of %#x: %w", uint64(p), err))
	}
	return nil
}

// Memset32 sets count 32-bit words at p to v, in stream order.
func Memset32(p Ptr, v uint32, count int64) error {
	leave, err := enter("memset")
	if err != nil {
		return err
	}
	defer leave()
	if err := cu.MemsetD32Async(cu.DevicePtr(p), uint(v), count, stream); err != nil {
		return fail("memset", err)
	}
	return nil
}

// stageHalf is the size of each half of the pinned staging buffer through
// which CopyHtoD and CopyDtoH copy: 2 × 4 MiB of page-locked memory, taken
// on the first copy and kept for the life of the process.
const stageHalf = 4 << 20

// stage is the pinned staging buffer and the state of the copy that uses
// it, guarded by mu. The driver copies page-locked memory by DMA at the
// link's speed, pageable memory two to four times slower through a bounce
// buffer of its own; copying through two halves of stage overlaps the
// host's memcpy of one piece with the DMA of the other (see stagedCopy).
var stage struct {
	buf   unsafe.Pointer // 2·stageHalf bytes of page-locked memory, nil before the first copy
	done  [2]cu.Event    // recorded after the last transfer through each half
	unset bool           // true once taking the buffer failed: copies go directly
	host  unsafe.Pointer // the caller's memory in the current copy
	dev   Ptr            // the device memory in the current copy
	toDev bool
}

// stageReady takes the staging buffer and its events on the first copy.
// Called with mu held and the context current. A failure to take them is
// not an error: copies then go directly from pageable memory.
func stageReady() bool {
	if stage.buf != nil || stage.unset {
		return stage.buf != nil
	}
	var p unsafe.Pointer
	if driverError(C.cuMemHostAlloc(&p, 2*stageHalf, 0)) != nil {
		stage.unset = true
		return false
	}
	for i := range stage.done {
		e, err := cu.MakeEvent(cu.DisableTiming)
		if err != nil {
			for _, e := range stage.done[:i] {
				_ = cu.DestroyEvent(&e)
			}
			_ = cu.MemFreeHost(p)
			stage.unset = true
			return false
		}
		stage.done[i] = e
	}
	stage.buf = p
	return true
}

// wait returns when the last transfer through half h has finished (at
// once if none was recorded).
func (stageDriver) wait(h int) error { return stage.done[h].Synchronize() }

// host copies one piece between the caller's memory and half h.
func (stageDriver) host(h int, off, n int64) error {
	half := unsafe.Slice((*byte)(unsafe.Add(stage.buf, int64(h)*stageHalf)), n)
	mem := unsafe.Slice((*byte)(unsafe.Add(stage.host, off)), n)
	if stage.toDev {
		copy(half, mem)
	} else {
		copy(mem, half)
	}
	return nil
}

// device starts the DMA of one piece between half h and device memory and
// records the half's event after it.
func (stageDriver) device(h int, off, n int64) error {
	half := unsafe.Add(stage.buf, int64(h)*stageHalf)
	dev := cu.DevicePtr(stage.dev) + cu.DevicePtr(off)
	var err error
	if stage.toDev {
		err = cu.MemcpyHtoDAsync(dev, half, n, stream)
	} else {
		err = cu.MemcpyDtoHAsync(half, dev, n, stream)
	}
	if err != nil {
		return err
	}
	return stage.done[h].Record(stream)
}

// stageDriver is stagedCopy's device side on the GPU, over stage.
type stageDriver struct{}

// uploadBytes is the size of the pinned ring through which CopyHtoD copies
// up to uploadMax bytes, taken on the first such copy and kept for the life
// of the process. Larger copies go through the staging buffer.
const (
	uploadBytes = 4 << 20
	uploadMax   = 256 << 10
)

// upload is the pinned ring and its events, guarded by mu. A copy through
// it takes a region of the ring (see ring), copies the caller's bytes
// there, queues their DMA to the device and records an event after it:
// the host waits only when the copies still queued fill the ring, never
// for the kernels queued before the copy.
var upload struct {
	buf    unsafe.Pointer // uploadBytes of page-locked memory, nil before the first copy
	r      ring
	events []cu.Event // by tag
	spare  []int      // tags whose event is not in use
	unset  bool       // true once taking the buffer failed
}

// uploadReady takes the ring on the first small copy. Called with mu held
// and the context current. A failure is not an error: copies then go
// through the staging buffer.
func uploadReady() bool {
	if upload.buf != nil || upload.unset {
		return upload.buf != nil
	}
	var p unsafe.Pointer
	if driverError(C.cuMemHostAlloc(&p, uploadBytes, 0)) != nil {
		upload.unset = true
		return false
	}
	upload.buf = p
	upload.r = ring{size: uploadBytes}
	return true
}

// uploadCopy copies bytes (≤ uploadMax) from src to dst through the ring,
// in stream order. Called with mu held and the context current.
func uploadCopy(dst Ptr, src unsafe.Pointer, bytes int64) error {
	start, err := upload.r.take(bytes, func(tag int) error {
		if err := upload.events[tag].Synchronize(); err != nil {
			return err
		}
		upload.spare = append(upload.spare, tag)
		return nil
	})
	if err != nil {
		return err
	}
	at := unsafe.Add(upload.buf, start)
	copy(unsafe.Slice((*byte)(at), bytes), unsafe.Slice((*byte)(src), bytes))
	if err := cu.MemcpyHtoDAsync(cu.DevicePtr(dst), at, bytes, stream); err != nil {
		return err
	}
	var tag int
	if n := len(upload.spare); n > 0 {
		tag, upload.spare = upload.spare[n-1], upload.spare[:n-1]
	} else {
		e, err := cu.MakeEvent(cu.DisableTiming)
		if err != nil {
			// The copy is queued but cannot be tracked: wait for it.
			return cu.Synchronize()
		}
		tag = len(upload.events)
		upload.events = append(upload.events, e)
	}
	if err := upload.events[tag].Record(stream); err != nil {
		upload.spare = append(upload.spare, tag)
		return err
	}
	upload.r.push(start, bytes, tag)
	return nil
}

// CopyHtoD copies bytes from host memory at src to the device, after the
// work queued before it; src may be reused when it returns. A copy of up
// to uploadMax bytes goes through the pinned ring (see upload) and returns
// without waiting for the stream. A larger one goes through a pinned
// staging buffer, in pieces, so a copy of any size works; it may wait for
// the stream to reach an earlier copy through the same buffer.
func CopyHtoD(dst Ptr, src unsafe.Pointer, bytes int64) error {
	leave, err := enter("copy to device")
	if err != nil {
		return err
	}
	defer leave()
	switch {
	case bytes <= 0:
		return nil
	case bytes <= uploadMax && uploadReady():
		err = uploadCopy(dst, src, bytes)
	case !stageReady():
		err = cu.MemcpyHtoD(cu.DevicePtr(dst), src, bytes)
	default:
		stage.host, stage.dev, stage.toDev = src, dst, true
		err = stagedCopy(true, bytes, stageHalf, stageDriver{})
		stage.host, stage.dev = nil, 0
	}
	if err != nil {
		return fail("copy to device", err)
	}
	return nil
}

// CopyDtoH waits for all queued work, then copies bytes from the device to
// host memory at dst. A fault of earlier work is reported here. The bytes
// come through a pinned staging buffer, in pieces, so a copy of any size
// works; after an error, dst holds an unspecified part of them.
func CopyDtoH(dst unsafe.Pointer, src Ptr, bytes int64) error {
	leave, err := enter("copy to host")
	if err != nil {
		return err
	}
	defer leave()
	if !stageReady() {
		err = cu.MemcpyDtoH(dst, cu.DevicePtr(src), bytes)
	} else {
		stage.host, stage.dev, stage.toDev = dst, src, false
		err = stagedCopy(false, bytes, stageHalf, stageDriver{})
		stage.host, stage.dev = nil, 0
	}
	if err != nil {
		return fail("copy to host", err)
	}
	return nil
}

// Launch enqueues kernel on grid×block threads with shmem bytes of dynamic
// shared memory and the parameters in a, and returns without waiting.
func Launch(kernel string, grid, block Dim3, shmem int, a *Args) error {
	if err := checkLaunch(kernel, grid, block, shmem, a); err != nil {
		return err
	}
	leave, err := enterOn("launch", kernel)
	if err != nil {
		return err
	}
	defer leave()
	fn, ok := funcs[kernel]
	if !ok {
		if fn, err = function(kernel); err != nil {
			return fail(opName("launch", kernel), err)
		}
		funcs[kernel] = fn
	}
	// The slots go to the driver by value (see lora_launch): no
	// allocation, Go's or C's, on this path.
	var slots C.lora_slots
	for i := range a.n {
		slots.w[i] = C.ulonglong(a.slot[i])
	}
	err = driverError(C.lora_launch(fn, C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z),
		C.uint(block.X), C.uint(block.Y), C.uint(block.Z), C.uint(shmem), slots, C.int(a.n)))
	if err != nil {
		return fail(opName("launch", kernel), err)
	}
	return nil
}

// function looks kernel up in the module.
func function(kernel string) (C.CUfunction, error) {
	var fn C.CUfunction
	name := C.CString(kernel)
	defer C.free(unsafe.Pointer(name))
	return fn, driverError(C.cuModuleGetFunction(&fn, mod, name))
}

// Sync waits for all queued work and reports a fault of any of it.
func Sync() error {
	leave, err := enter("Sync")
	if err != nil {
		return err
	}
	defer leave()
	if err := cu.Synchronize(); err != nil {
		return fail("Sync", err)
	}
	freeQueued = false
	return nil
}

// Event marks a point in the stream, for timing kernels.
type Event struct{ e cu.Event }

// NewEvent returns an unrecorded event.
func NewEvent() (*Event, error) {
	leave, err := enter("event")
	if err != nil {
		return nil, err
	}
	defer leave()
	e, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		return nil, fail("event", err)
	}
	return &Event{e}, nil
}

// Record marks the event at the current end of the stream.
func (e *Event) Record() error {
	leave, err := enter("event")
	if err != nil {
		return err
	}
	defer leave()
	if err := e.e.Record(stream); err != nil {
		return fail("event", err)
	}
	return nil
}

// Since waits for e and returns the seconds of stream time between start
// and e.
func (e *Event) Since(start *Event) (float64, error) {
	leave, err := enter("event")
	if err != nil {
		return 0, err
	}
	defer leave()
	if err := e.e.Synchronize(); err != nil {
		return 0, fail("event", err)
	}
	ms, err := start.e.Elapsed(e.e)
	if err != nil {
		return 0, fail("event", err)
	}
	return ms / 1e3, nil
}

// Destroy releases the event.
func (e *Event) Destroy() {
	leave, err := enter("event")
	if err != nil {
		return
	}
	defer leave()
	if err := cu.DestroyEvent(&e.e); err != nil {
		_ = fail("event", err)
	}
}
