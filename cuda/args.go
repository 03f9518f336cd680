//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"math"
	"unsafe"
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
type Args struct {
	slot [maxArgs]uint64
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
func (a *Args) Ptr(p Ptr) *Args { return a.put(uint64(p)) }

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

// checkLaunch validates a launch's geometry against CUDA's limits.
func checkLaunch(kernel string, grid, block Dim3, shmem int, a *Args) error {
	if a.err != nil {
		return fmt.Errorf("cuda: launch %s: %w", kernel, a.err)
	}
	if grid.X < 1 || grid.Y < 1 || grid.Z < 1 || grid.X > math.MaxInt32 || grid.Y > 65535 || grid.Z > 65535 {
		return fmt.Errorf("cuda: launch %s: grid %v outside (1…2³¹−1, 1…65535, 1…65535)", kernel, grid)
	}
	if block.X < 1 || block.Y < 1 || block.Z < 1 || block.X*block.Y*block.Z > 1024 {
		return fmt.Errorf("cuda: launch %s: block %v outside 1…1024 threads", kernel, block)
	}
	if shmem < 0 || shmem > 48<<10 {
		return fmt.Errorf("cuda: launch %s: %d bytes of dynamic shared memory", kernel, shmem)
	}
	return nil
}
