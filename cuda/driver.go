//go:build cuda

package cuda

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
	mod     cu.Module
	devName string
	funcs   = map[string]cu.Function{}
	stream  cu.Stream // the zero Stream: the context's default stream
	ordinal int
	peakBW  float64 // nominal memory bandwidth, bytes/s
	l2Bytes int
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
	if ctx, err = dev.RetainPrimaryCtx(); err != nil {
		return fmt.Errorf("cuda: device %d: primary context: %v", ordinal, err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cu.SetCurrentContext(ctx); err != nil {
		return fmt.Errorf("cuda: device %d: %v", ordinal, err)
	}
	if mod, err = cu.LoadData(kernels.Fatbin); err != nil {
		return fmt.Errorf("cuda: loading lora.fatbin on %s: %v", devName, err)
	}
	return nil
}

// enter initialises the device if needed, refuses op once the device has
// faulted, takes the lock, locks the goroutine to its thread and makes the
// context current there. The returned function undoes it.
func enter(op string) (func(), error) {
	if err := Init(); err != nil {
		return nil, err
	}
	mu.Lock()
	if err := faulted(op); err != nil {
		mu.Unlock()
		return nil, err
	}
	runtime.LockOSThread()
	leave := func() {
		runtime.UnlockOSThread()
		mu.Unlock()
	}
	if err := cu.SetCurrentContext(ctx); err != nil {
		leave()
		return nil, fail(op, fmt.Errorf("making the context current: %w", err))
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

// L2Bytes returns the size of the device's L2 cache (0 if unknown).
func L2Bytes() int {
	if Init() != nil {
		return 0
	}
	return l2Bytes
}

// Alloc returns bytes of device memory, uninitialised.
func Alloc(bytes int64) (Ptr, error) {
	if bytes < 1 {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes", bytes)
	}
	leave, err := enter("Alloc")
	if err != nil {
		return 0, err
	}
	defer leave()
	p, err := cu.MemAlloc(bytes)
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

// Free releases memory from Alloc; Free(0) does nothing. The driver waits
// for the work queued before it. A failed Free leaves the state of device
// memory unknown, so it is a device fault: Free returns it, and so does
// every later call of the package.
func Free(p Ptr) error {
	if p == 0 {
		return nil
	}
	leave, err := enter("Free")
	if err != nil {
		return err
	}
	defer leave()
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

// CopyHtoD copies bytes from host memory at src to the device, after the
// work queued before it; src may be reused when it returns.
func CopyHtoD(dst Ptr, src unsafe.Pointer, bytes int64) error {
	leave, err := enter("copy to device")
	if err != nil {
		return err
	}
	defer leave()
	if err := cu.MemcpyHtoD(cu.DevicePtr(dst), src, bytes); err != nil {
		return fail("copy to device", err)
	}
	return nil
}

// CopyDtoH waits for all queued work, then copies bytes from the device to
// host memory at dst. A fault of earlier work is reported here.
func CopyDtoH(dst unsafe.Pointer, src Ptr, bytes int64) error {
	leave, err := enter("copy to host")
	if err != nil {
		return err
	}
	defer leave()
	if err := cu.MemcpyDtoH(dst, cu.DevicePtr(src), bytes); err != nil {
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
	op := "launch " + kernel
	leave, err := enter(op)
	if err != nil {
		return err
	}
	defer leave()
	fn, ok := funcs[kernel]
	if !ok {
		if fn, err = mod.Function(kernel); err != nil {
			return fail(op, err)
		}
		funcs[kernel] = fn
	}
	params := a.params()
	err = fn.Launch(grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, shmem, stream, params)
	runtime.KeepAlive(a)
	runtime.KeepAlive(params)
	if err != nil {
		return fail(op, err)
	}
	return nil
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
