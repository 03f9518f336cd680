//go:build !cuda && !cudaemu

package lora

import (
	"fmt"
	"math"
	"slices"

	"github.com/golora/lora/internal/cpu"
	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/sysmem"
)

// buffer is a Matrix's storage: host memory, data for an F32 matrix, bits
// (the stored 16-bit patterns) for an F16 or BF16 one, codes and absmax
// (in blocks of block elements) for an NF4 one.
type buffer struct {
	data   []float32
	bits   []uint16
	codes  []byte
	absmax []float32
	block  int
	dt     DType
}

// newBuffer allocates n elements of dt, or refuses with ErrMemory when they
// cannot fit in the machine's physical memory: the runtime would otherwise
// end the process with "out of memory".
func (cpuBackend) newBuffer(n int, dt DType) (buffer, error) {
	if err := sysmem.Check("its storage", int64(dt.Size())*int64(n)); err != nil {
		return buffer{}, fmt.Errorf("%w: %w", err, ErrMemory)
	}
	if dt.half() {
		return buffer{bits: make([]uint16, n), dt: dt}, nil
	}
	return buffer{data: make([]float32, n), dt: dt}, nil
}

// poisonTemps makes newTemp fill a reused slice with NaN.
var poisonTemps bool

// newTemp returns float32 storage of n elements for a staging temporary:
// scratch of internal/cpu (cpu.TakeF32), recycled by size class, so that
// a half-precision Forward or Backward, which stages x and y (dy, dx) on
// every call, allocates nothing once warm (allocated afresh, each would
// cost the runtime a serial clear: at n = 256, in = out = 4096, about
// 0.8 ms a call). Its contents are those of an earlier use; with
// poisonTemps (set by the package's tests) they are set to NaN, so that an
// element a kernel leaves unwritten shows in the result.
func (cpuBackend) newTemp(n int) (buffer, error) {
	if err := sysmem.Check("its storage", 4*int64(n)); err != nil {
		return buffer{}, fmt.Errorf("%w: %w", err, ErrMemory)
	}
	d := *cpu.TakeF32(n)
	if poisonTemps {
		nan := float32(math.NaN())
		for i := range d {
			d[i] = nan
		}
	}
	return buffer{data: d, dt: F32}, nil
}

// releaseTemp frees m and gives its slice back (cpu.GiveF32).
func (cpuBackend) releaseTemp(m *Matrix) {
	d := m.buf.data
	m.Free()
	cpu.GiveF32(&d)
}

// newQuantized allocates an NF4 buffer of n elements holding a copy of
// codes and absmax, or refuses with ErrMemory.
func (cpuBackend) newQuantized(n, block int, codes []byte, absmax []float32) (buffer, error) {
	if err := sysmem.Check("its storage", int64(len(codes))+4*int64(len(absmax))); err != nil {
		return buffer{}, fmt.Errorf("%w: %w", err, ErrMemory)
	}
	return buffer{codes: slices.Clone(codes), absmax: slices.Clone(absmax), block: block, dt: NF4}, nil
}

func (b *buffer) readQuantized(codes []byte, absmax []float32) error {
	copy(codes, b.codes)
	copy(absmax, b.absmax)
	return nil
}

func (b *buffer) read(dst []float32) error {
	switch b.dt {
	case NF4:
		cpu.Dequantize(cpu.Mat{Rows: 1, Cols: len(dst), Type: cpu.F32, F32: dst},
			cpu.Mat{Rows: 1, Cols: len(dst), Type: cpu.NF4, Codes: b.codes, Absmax: b.absmax, Block: b.block})
	case F16:
		split(len(dst), func(lo, hi int) { half.F16ToF32(dst[lo:hi], b.bits[lo:hi]) })
	case BF16:
		split(len(dst), func(lo, hi int) { half.BF16ToF32(dst[lo:hi], b.bits[lo:hi]) })
	default:
		copy(dst, b.data)
	}
	return nil
}

func (b *buffer) write(src []float32) error {
	switch b.dt {
	case F16:
		split(len(src), func(lo, hi int) { half.F32ToF16(b.bits[lo:hi], src[lo:hi]) })
	case BF16:
		split(len(src), func(lo, hi int) { half.F32ToBF16(b.bits[lo:hi], src[lo:hi]) })
	default:
		copy(b.data, src)
	}
	return nil
}

// splitBlock is the unit, in elements, in which split shares a conversion.
const splitBlock = 1 << 14

// split calls f on consecutive parts of [0, n), shared among goroutines
// where n is at least 16 blocks of splitBlock elements (a conversion of
// fewer is over before goroutines would pay for themselves), whole blocks
// each but the last.
func split(n int, f func(lo, hi int)) {
	blocks := (n + splitBlock - 1) / splitBlock
	work := 0
	if blocks >= 16 {
		work = n
	}
	cpu.Parallel(blocks, work, func(lo, hi int) {
		f(lo*splitBlock, min(n, hi*splitBlock))
	})
}

func (b *buffer) readBits(dst []uint16) error  { copy(dst, b.bits); return nil }
func (b *buffer) writeBits(src []uint16) error { copy(b.bits, src); return nil }
func (b *buffer) free()                        { b.data, b.bits, b.codes, b.absmax = nil, nil, nil, nil }

// nf4Beyond returns the first element of the NF4 matrix m whose magnitude
// is lim or more, or −1.
func (cpuBackend) nf4Beyond(m *Matrix, lim float32) (int, float32, error) {
	i, v := cpu.NF4Beyond(m.buf.codes, m.buf.absmax, m.block, m.rows*m.cols, lim)
	return i, v, nil
}

// dequantize writes the values of the NF4 matrix src into dst.
func (cpuBackend) dequantize(dst, src *Matrix) error {
	cpu.Dequantize(host(dst), host(src))
	return nil
}

// convert sets dst ← src, rounded to dst's dtype to nearest even; both have
// the same shape. A finite value beyond dst's range becomes ±Inf.
func (cpuBackend) convert(dst, src *Matrix) error {
	switch {
	case src.dt == F32:
		return dst.buf.write(src.buf.data)
	case dst.dt == F32:
		return src.buf.read(dst.buf.data)
	case src.dt == dst.dt:
		copy(dst.buf.bits, src.buf.bits)
		return nil
	}
	// F16 ↔ BF16 through float32, in blocks that stay in cache.
	var tmp [1024]float32
	for lo := 0; lo < len(src.buf.bits); lo += len(tmp) {
		hi := min(lo+len(tmp), len(src.buf.bits))
		t := tmp[:hi-lo]
		sb := buffer{bits: src.buf.bits[lo:hi], dt: src.dt}
		db := buffer{bits: dst.buf.bits[lo:hi], dt: dst.dt}
		_ = sb.read(t)
		_ = db.write(t)
	}
	return nil
}
