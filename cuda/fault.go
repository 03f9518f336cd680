package cuda

import (
	"errors"
	"fmt"
	"sync"
)

// A device fault (an illegal address, a kernel that traps, an uncorrectable
// memory error, a failed Free) leaves a CUDA context unusable: the driver
// reports the same error from every later call, and only a new process gets
// a working context. The package records the first fault and refuses every
// later call with an error that wraps it, so callers learn the original
// cause rather than a chain of consequences.
var (
	faultMu sync.Mutex
	fault   error // the first fault; nil while the device is healthy
)

// Fault returns the first device fault of the process, or nil. Once it is
// not nil, every function of the package that uses the device returns an
// error wrapping it: the process must be restarted to use the GPU again.
func Fault() error {
	faultMu.Lock()
	defer faultMu.Unlock()
	return fault
}

// faulted returns an error wrapping the first fault for op, or nil when the
// device is healthy.
func faulted(op string) error {
	faultMu.Lock()
	defer faultMu.Unlock()
	if fault == nil {
		return nil
	}
	return fmt.Errorf("cuda: %s: the device faulted earlier, restart the process to use the GPU again: %w", op, fault)
}

// setFault records err as the device's fault unless one was recorded before,
// and returns err.
func setFault(err error) error {
	faultMu.Lock()
	defer faultMu.Unlock()
	if fault == nil {
		fault = err
	}
	return err
}

// ErrOutOfMemory is wrapped by Alloc's error when the device cannot hold the
// allocation (on the emulator: when it is larger than the machine's physical
// memory). It is not a fault: later calls work.
var ErrOutOfMemory = errors.New("out of device memory")
