package cuda

import (
	"fmt"
	"math"

	"github.com/golora/lora/kernels"
)

// Ptr is a device address (on cudaemu, a host address from C.malloc).
type Ptr uint64

// Dim3 is a grid or block size.
type Dim3 struct{ X, Y, Z int }

// maxArgs bounds the parameters of one kernel.
const maxArgs = 16

// Args packs kernel parameters with the layout of cuLaunchKernel's
// kernelParams. Each value sits in its own 8-byte slot, little-endian, so a
// 4-byte int or float is the low half of its slot: reading 8 bytes from any
// slot, as gorgonia.org/cu's Launch does, stays inside the slot, and the
// kernel reads the 4 bytes it expects. An Args must stay alive and unmoved
// until Launch returns; Go's collector does not move heap objects.
//
// Args holds device addresses as plain numbers: it keeps no Go object alive.
// Whoever packs the address of memory that a Go finalizer or cleanup may
// release must keep its owner alive until Launch returns.
type Args struct {
	slot [maxArgs]uint64
	ptrs uint32 // bit i: slot i holds a device pointer
	n    int
	err  error
}

func (a *Args) put(v uint64) *Args {
	if a.n == maxArgs {
		a.err = fmt.Errorf("cuda: more than %d kernel arguments", maxArgs)
		return a
	}
	a.slot[a.n] = v
	a.n++
	return a
}

// Ptr appends a device pointer parameter.
func (a *Args) Ptr(p Ptr) *Args {
	if a.n < maxArgs {
		a.ptrs |= 1 << a.n
	}
	return a.put(uint64(p))
}

// Int appends an int parameter (32 bits). A value outside int32 is an error
// at Launch.
func (a *Args) Int(v int) *Args {
	if v < math.MinInt32 || v > math.MaxInt32 {
		a.err = fmt.Errorf("cuda: kernel argument %d does not fit an int", v)
	}
	return a.put(uint64(uint32(int32(v))))
}

// Int64 appends a long long parameter.
func (a *Args) Int64(v int64) *Args { return a.put(uint64(v)) }

// Float appends a float parameter.
func (a *Args) Float(v float32) *Args { return a.put(uint64(math.Float32bits(v))) }

// Len returns the number of parameters.
func (a *Args) Len() int { return a.n }

// checkLaunch validates a launch's arguments against the kernel's declared
// parameters (kernels.Params) and its geometry against CUDA's limits.
func checkLaunch(kernel string, grid, block Dim3, shmem int, a *Args) error {
	if a == nil {
		return fmt.Errorf("cuda: launch %s: nil Args", kernel)
	}
	if a.err != nil {
		return fmt.Errorf("cuda: launch %s: %w", kernel, a.err)
	}
	want, ok := kernels.Params[kernel]
	if !ok {
		return fmt.Errorf("cuda: launch %s: no such kernel", kernel)
	}
	if a.n != want {
		return fmt.Errorf("cuda: launch %s: %s packed, the kernel takes %d", kernel, plural(a.n, "argument"), want)
	}
	if grid.X < 1 || grid.Y < 1 || grid.Z < 1 || grid.X > math.MaxInt32 || grid.Y > 65535 || grid.Z > 65535 {
		return fmt.Errorf("cuda: launch %s: grid %v outside (1…2³¹−1, 1…65535, 1…65535)", kernel, grid)
	}
	if block.X < 1 || block.Y < 1 || block.Z < 1 || block.X > 1024 || block.Y > 1024 || block.Z > 64 ||
		block.X*block.Y*block.Z > 1024 {
		return fmt.Errorf("cuda: launch %s: block %v outside 1…1024 threads (x, y ≤ 1024, z ≤ 64)", kernel, block)
	}
	if shmem < 0 || shmem > 48<<10 {
		return fmt.Errorf("cuda: launch %s: %d bytes of dynamic shared memory", kernel, shmem)
	}
	return nil
}

// plural returns "1 argument", "2 arguments".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// stageOps is the device side of a copy through a staging buffer of two
// halves (see stagedCopy): the driver in the cuda build, a model of an
// asynchronous device in the tests.
type stageOps interface {
	// wait returns when every transfer started through half h has finished.
	wait(h int) error
	// host copies n bytes at offset off of the transfer between the
	// caller's memory and half h: into the half on the way to the device,
	// out of it on the way back.
	host(h int, off, n int64) error
	// device starts the transfer of n bytes at offset off between half h
	// and device memory, in stream order, and returns without waiting.
	device(h int, off, n int64) error
}

// stagedCopy copies total bytes between the caller's memory and the device
// through a staging buffer of two halves of half bytes each, in pieces of
// at most half bytes, so that the host's copy of one piece overlaps the
// device's transfer of the other. Piece i covers the bytes
// [i·half, min((i+1)·half, total)) and goes through half i mod 2. To the
// device, each piece is wait(h), host(h, …), device(h, …); its transfer may
// still be running when stagedCopy returns, so a later copy's wait(h)
// guards the half. From the device, each piece is wait(h), device(h, …),
// then wait and host for the piece before it, and the last piece is waited
// for and copied out before stagedCopy returns: the bytes are all in the
// caller's memory when it returns nil. The first error stops the copy and
// is returned; the caller's memory then holds an unspecified part of the
// transfer (from the device) or the device memory does (to the device).
func stagedCopy(toDevice bool, total, half int64, ops stageOps) error {
	if total < 0 || half < 1 {
		return fmt.Errorf("cuda: staged copy of %d bytes through halves of %d bytes", total, half)
	}
	prevOff, prevN := int64(0), int64(0) // the piece from the device not yet copied out
	for i, off := 0, int64(0); off < total; i, off = i+1, off+half {
		h, n := i%2, min(half, total-off)
		if err := ops.wait(h); err != nil {
			return err
		}
		if toDevice {
			if err := ops.host(h, off, n); err != nil {
				return err
			}
			if err := ops.device(h, off, n); err != nil {
				return err
			}
			continue
		}
		if err := ops.device(h, off, n); err != nil {
			return err
		}
		if prevN > 0 {
			if err := drain(ops, 1-h, prevOff, prevN); err != nil {
				return err
			}
		}
		prevOff, prevN = off, n
	}
	if prevN > 0 {
		return drain(ops, int((prevOff/half)%2), prevOff, prevN)
	}
	return nil
}

// drain waits for the transfer from the device through half h and copies
// its n bytes out to offset off of the caller's memory.
func drain(ops stageOps, h int, off, n int64) error {
	if err := ops.wait(h); err != nil {
		return err
	}
	return ops.host(h, off, n)
}
