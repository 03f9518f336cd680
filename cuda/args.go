package cuda

import (
	"fmt"
	"math"
	"unsafe"

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

// params returns kernelParams: a pointer to each slot.
func (a *Args) params() []unsafe.Pointer {
	p := make([]unsafe.Pointer, a.n)
	for i := range p {
		p[i] = unsafe.Pointer(&a.slot[i])
	}
	return p
}

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
