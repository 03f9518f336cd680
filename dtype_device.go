//go:build cuda || cudaemu

package lora

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/kernels"
)

// buffer is a Matrix's storage: device memory, n elements of dt.
type buffer struct {
	p       cuda.Ptr
	n       int
	dt      DType
	cleanup runtime.Cleanup
}

// bytes returns the buffer's size in bytes.
func (b *buffer) bytes() int64 { return int64(b.n) * int64(b.dt.Size()) }

// newBuffer allocates n elements of dt in device memory, zeroed. Out of
// device memory wraps ErrMemory as well as ErrDevice.
func (gpuBackend) newBuffer(n int, dt DType) (buffer, error) {
	b := buffer{n: n, dt: dt}
	// Whole 4-byte words, for Memset32: an odd count of 16-bit elements
	// gets 2 bytes more than it holds.
	words := (b.bytes() + 3) / 4
	p, err := cuda.Alloc(4 * words)
	if errors.Is(err, cuda.ErrOutOfMemory) {
		return buffer{}, fmt.Errorf("%w: %w", devErr(err), ErrMemory)
	}
	if err != nil {
		return buffer{}, devErr(err)
	}
	if err := cuda.Memset32(p, 0, words); err != nil {
		_ = cuda.Free(p) // a failure is sticky in package cuda
		return buffer{}, devErr(err)
	}
	b.p = p
	return b, nil
}

// releaseOnCollect arranges for a Matrix collected without Free to say so on stderr and
// release its device memory. A finalizer is no substitute for Free: device
// memory runs out long before the Go heap notices.
func (gpuBackend) releaseOnCollect(m *Matrix) {
	p, rows, cols := m.buf.p, m.rows, m.cols
	m.buf.cleanup = runtime.AddCleanup(m, func(p cuda.Ptr) {
		fmt.Fprintf(os.Stderr, "lora: a %d×%d Matrix was garbage-collected without Free; releasing its device memory\n", rows, cols)
		_ = cuda.Free(p) // a failure is sticky: the next call reports it
	}, p)
}

// read copies the buffer to dst, widening F16 and BF16 on the host.
func (b *buffer) read(dst []float32) error {
	if !b.dt.half() {
		return devErr(cuda.CopyDtoH(unsafe.Pointer(unsafe.SliceData(dst)), b.p, b.bytes()))
	}
	bits := make([]uint16, b.n)
	if err := b.readBits(bits); err != nil {
		return err
	}
	if b.dt == F16 {
		half.F16ToF32(dst, bits)
	} else {
		half.BF16ToF32(dst, bits)
	}
	return nil
}

// write copies src into the buffer, rounding to F16 or BF16 on the host.
func (b *buffer) write(src []float32) error {
	if !b.dt.half() {
		return devErr(cuda.CopyHtoD(b.p, unsafe.Pointer(unsafe.SliceData(src)), b.bytes()))
	}
	bits := make([]uint16, b.n)
	if b.dt == F16 {
		half.F32ToF16(bits, src)
	} else {
		half.F32ToBF16(bits, src)
	}
	return b.writeBits(bits)
}

func (b *buffer) readBits(dst []uint16) error {
	return devErr(cuda.CopyDtoH(unsafe.Pointer(unsafe.SliceData(dst)), b.p, b.bytes()))
}

func (b *buffer) writeBits(src []uint16) error {
	return devErr(cuda.CopyHtoD(b.p, unsafe.Pointer(unsafe.SliceData(src)), b.bytes()))
}

// free releases the device memory. A failure is a device fault, recorded
// by package cuda and reported by every later call (see Faults in device.go).
func (b *buffer) free() {
	b.cleanup.Stop()
	_ = cuda.Free(b.p)
	b.p = 0
}

// convert enqueues dst ← src, rounded to dst's dtype to nearest even (one
// lora_convert_<src>_<dst> launch); both have the same shape. A finite value beyond
// dst's range becomes ±Inf.
func (gpuBackend) convert(dst, src *Matrix) error {
	count := int64(src.rows) * int64(src.cols)
	if count == 0 {
		return nil
	}
	var k launchArgs
	k.mat(src).mat(dst).int64(count)
	return launch(convertKernel(src.dt, dst.dt), cuda.Dim3{X: plan.ConvertBlocks(count), Y: 1, Z: 1},
		cuda.Dim3{X: kernels.ConvertThreads, Y: 1, Z: 1}, &k)
}

// convertKernel names the lora_convert kernel from src to dst.
func convertKernel(src, dst DType) string { return "lora_convert_" + src.String() + "_" + dst.String() }

// directIO reports whether forward and linear take this y and x as they are
// stored: they take every dtype (see forwardKernels).
func (gpuBackend) directIO(y, x *Matrix) bool { return true }
