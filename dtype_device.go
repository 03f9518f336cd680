//go:build cuda || cudaemu

package lora

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/internal/cpu"
	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/kernels"
)

// buffer is a Matrix's storage: device memory, n elements of dt. An NF4
// buffer holds its codes from p, then, from p + absmaxAt (16-byte
// aligned), its float32 absmax, one per block of block elements.
type buffer struct {
	p        cuda.Ptr
	n        int
	dt       DType
	block    int
	absmaxAt int64
	cleanup  runtime.Cleanup
}

// bytes returns the buffer's size in bytes.
func (b *buffer) bytes() int64 { return int64(b.n) * int64(b.dt.Size()) }

// newTemp allocates a staging temporary: a float32 buffer as newBuffer
// makes one (the stream-ordered allocator makes it cheap).
func (g gpuBackend) newTemp(n int) (buffer, error) { return g.newBuffer(n, F32) }

// releaseTemp frees a staging temporary.
func (gpuBackend) releaseTemp(m *Matrix) { m.Free() }

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

// newQuantized allocates an NF4 buffer of n elements in device memory and
// copies codes and absmax into it.
func (gpuBackend) newQuantized(n, block int, codes []byte, absmax []float32) (buffer, error) {
	at := (int64(len(codes)) + 15) &^ 15
	size := at + 4*int64(len(absmax))
	p, err := cuda.Alloc(size)
	if errors.Is(err, cuda.ErrOutOfMemory) {
		return buffer{}, fmt.Errorf("%w: %w", devErr(err), ErrMemory)
	}
	if err != nil {
		return buffer{}, devErr(err)
	}
	b := buffer{p: p, n: n, dt: NF4, block: block, absmaxAt: at}
	if err := cuda.CopyHtoD(p, unsafe.Pointer(unsafe.SliceData(codes)), int64(len(codes))); err != nil {
		_ = cuda.Free(p)
		return buffer{}, devErr(err)
	}
	if err := cuda.CopyHtoD(p+cuda.Ptr(at), unsafe.Pointer(unsafe.SliceData(absmax)), 4*int64(len(absmax))); err != nil {
		_ = cuda.Free(p)
		return buffer{}, devErr(err)
	}
	return b, nil
}

// readQuantized copies an NF4 buffer's codes and absmax to the host.
func (b *buffer) readQuantized(codes []byte, absmax []float32) error {
	if err := cuda.CopyDtoH(unsafe.Pointer(unsafe.SliceData(codes)), b.p, int64(len(codes))); err != nil {
		return devErr(err)
	}
	return devErr(cuda.CopyDtoH(unsafe.Pointer(unsafe.SliceData(absmax)), b.p+cuda.Ptr(b.absmaxAt), 4*int64(len(absmax))))
}

// hostNF4 returns an NF4 buffer's codes and absmax, copied to the host, as
// internal/cpu takes them.
func (b *buffer) hostNF4(rows, cols int) (cpu.Mat, error) {
	codes, absmax := make([]byte, (b.n+1)/2), make([]float32, (b.n+b.block-1)/b.block)
	if err := b.readQuantized(codes, absmax); err != nil {
		return cpu.Mat{}, err
	}
	return cpu.Mat{Rows: rows, Cols: cols, Type: cpu.NF4, Codes: codes, Absmax: absmax, Block: b.block}, nil
}

// nf4Beyond returns the first element of the NF4 matrix m whose magnitude
// is lim or more, or −1, computed on the host.
func (gpuBackend) nf4Beyond(m *Matrix, lim float32) (int, float32, error) {
	h, err := m.buf.hostNF4(m.rows, m.cols)
	if err != nil {
		return 0, 0, err
	}
	i, v := cpu.NF4Beyond(h.Codes, h.Absmax, h.Block, m.rows*m.cols, lim)
	return i, v, nil
}

// dequantize enqueues dst ← the values of the NF4 matrix src, rounded to
// dst's dtype: one lora_dequantize_nf4_<dst> launch over src's codes and
// absmax (each value formed in float32, then rounded once).
func (gpuBackend) dequantize(dst, src *Matrix) error {
	count := int64(src.rows) * int64(src.cols)
	if count == 0 {
		return nil
	}
	var k launchArgs
	k.mat(src).nf4Absmax(src).mat(dst).int64(count).int32(src.buf.block)
	return launch("lora_dequantize_nf4_"+dst.dt.String(), cuda.Dim3{X: plan.ConvertBlocks(count), Y: 1, Z: 1},
		cuda.Dim3{X: kernels.ConvertThreads, Y: 1, Z: 1}, &k)
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
	if b.dt == NF4 {
		h, err := b.hostNF4(1, b.n)
		if err != nil {
			return err
		}
		cpu.Dequantize(cpu.Mat{Rows: 1, Cols: b.n, Type: cpu.F32, F32: dst}, h)
		return nil
	}
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
