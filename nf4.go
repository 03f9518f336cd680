package lora

import (
	"fmt"
	"math"

	"github.com/golora/lora/internal/cpu"
)

// NF4 matrices: bitsandbytes' 4-bit NormalFloat, as QLoRA keeps a base
// weight. Elements are numbered in row-major order; each run of BlockSize
// consecutive elements (a block may straddle rows; the last may be short)
// shares one float32 scale, its absmax; each element is a 4-bit code into
// bitsandbytes' NF4 table (−1.0, −0.6961928009986877, …, 0.7229568362236023,
// 1.0, as float32), two codes a byte, the element of even index in the high
// nibble. An element's value is float32(table[code]) · absmax[block], one
// float32 rounding: Read returns exactly these values, and every
// computation uses exactly them.

// defaultBlockSize is bitsandbytes' default block size.
const defaultBlockSize = 64

// checkBlockSize returns the block size that blockSize stands for (0 means
// 64), or an error wrapping ErrConfig unless it is a power of two from 32
// to 4096.
func checkBlockSize(op string, blockSize int) (int, error) {
	if blockSize == 0 {
		return defaultBlockSize, nil
	}
	if blockSize < 32 || blockSize > 4096 || blockSize&(blockSize-1) != 0 {
		return 0, fmt.Errorf("lora: %s: block size %d, want a power of two from 32 to 4096 (or 0 for 64): %w", op, blockSize, ErrConfig)
	}
	return blockSize, nil
}

// quantizedLens returns the lengths of the codes and absmax of rows×cols
// elements in blocks of block.
func quantizedLens(rows, cols, block int) (codes, absmax int) {
	n := rows * cols
	return (n + 1) / 2, (n + block - 1) / block
}

// Quantize returns a new NF4 matrix holding src (F32, F16 or BF16: its
// values as stored) quantized exactly as bitsandbytes 0.50's
// quantize_4bit(quant_type="nf4") does on its default backend: for each
// full block, absmax = max|x| (stored as it is, 0 included) and the code of
// clamp(x · (1/max(absmax, 1e-38)), −1, 1), the reciprocal and the product
// each rounded to float32; for a short last block, of x / am with
// am = max(max|x|, 1e-38), the am stored. The code is the number of
// midpoints (table[i] + table[i+1]) / 2 (float32) strictly below the scaled
// value, so a value exactly on a midpoint takes the lower code; an odd
// count pads the last low nibble with code 7 (0.0).
//
// dt must be NF4 (ErrDType otherwise). blockSize 0 means 64; any power of
// two from 32 to 4096 is taken (ErrConfig otherwise). src holding NaN or
// ±Inf is refused with ErrNonFinite. The quantization runs on the host: on
// the GPU, src is read back first (which waits for queued work).
func Quantize(dt DType, src *Matrix, blockSize int) (*Matrix, error) {
	const op = "Quantize"
	if dt != NF4 {
		return nil, fmt.Errorf("lora: %s: to %v, want NF4: F32, F16 and BF16 matrices are made by NewMatrixOf, and Dequantize gives one from an NF4 matrix: %w", op, dt, ErrDType)
	}
	if err := src.usable(op, "src"); err != nil {
		return nil, err
	}
	if err := wantFloat(op, "src", src); err != nil {
		return nil, err
	}
	bs, err := checkBlockSize(op, blockSize)
	if err != nil {
		return nil, err
	}
	vals, err := src.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("lora: %s: %w", op, err)
	}
	for i, v := range vals {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("lora: %s: src[%d, %d] is %v: %w", op, i/src.cols, i%src.cols, v, ErrNonFinite)
		}
	}
	nc, na := quantizedLens(src.rows, src.cols, bs)
	codes, absmax := make([]byte, nc), make([]float32, na)
	cpu.QuantizeNF4(codes, absmax, vals, bs)
	return newQuantized(op, src.rows, src.cols, bs, codes, absmax)
}

// NewQuantizedFrom returns a new rows×cols NF4 matrix that holds a copy of
// a checkpoint's packed codes and absmax as they are: len(codes) =
// ceil(rows·cols/2), len(absmax) = ceil(rows·cols/blockSize) (ErrShape
// otherwise). dt must be NF4 (ErrDType); blockSize 0 means 64, else a power
// of two from 32 to 4096 (ErrConfig); an absmax that is NaN or ±Inf is
// refused with ErrNonFinite.
func NewQuantizedFrom(dt DType, rows, cols, blockSize int, codes []byte, absmax []float32) (*Matrix, error) {
	const op = "NewQuantizedFrom"
	if dt != NF4 {
		return nil, fmt.Errorf("lora: %s: %v, want NF4: %w", op, dt, ErrDType)
	}
	if err := checkDims(op, rows, cols); err != nil {
		return nil, err
	}
	bs, err := checkBlockSize(op, blockSize)
	if err != nil {
		return nil, err
	}
	nc, na := quantizedLens(rows, cols, bs)
	if len(codes) != nc {
		return nil, fmt.Errorf("lora: %s: len(codes) is %d, want ⌈%d×%d/2⌉ = %d: %w", op, len(codes), rows, cols, nc, ErrShape)
	}
	if len(absmax) != na {
		return nil, fmt.Errorf("lora: %s: len(absmax) is %d, want ⌈%d×%d/%d⌉ = %d: %w", op, len(absmax), rows, cols, bs, na, ErrShape)
	}
	for i, v := range absmax {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("lora: %s: absmax[%d] is %v: %w", op, i, v, ErrNonFinite)
		}
	}
	return newQuantized(op, rows, cols, bs, codes, absmax)
}

// newQuantized allocates the NF4 matrix of checked codes and absmax.
func newQuantized(op string, rows, cols, block int, codes []byte, absmax []float32) (*Matrix, error) {
	buf, err := be.newQuantized(rows*cols, block, codes, absmax)
	if err != nil {
		return nil, fmt.Errorf("lora: %s: %d×%d: %w", op, rows, cols, err)
	}
	m := &Matrix{rows: rows, cols: cols, dt: NF4, block: block, buf: buf}
	be.releaseOnCollect(m)
	return m, nil
}

// BlockSize returns the elements that share one absmax in an NF4 matrix,
// and 0 for F32, F16 and BF16 (and a nil or zero Matrix).
func (m *Matrix) BlockSize() int {
	if m == nil {
		return 0
	}
	return m.block
}

// ReadQuantized copies an NF4 matrix's stored state, as it is, into codes
// (ceil(rows·cols/2) bytes) and absmax (ceil(rows·cols/BlockSize)
// float32s). It refuses any other dtype with ErrDType, and other lengths
// with ErrShape. Like Read, it waits for queued work.
func (m *Matrix) ReadQuantized(codes []byte, absmax []float32) error {
	const op = "ReadQuantized"
	if err := m.usable(op, "m"); err != nil {
		return err
	}
	if m.dt != NF4 {
		return fmt.Errorf("lora: %s: m is %v, want NF4: %w", op, m.dt, ErrDType)
	}
	nc, na := quantizedLens(m.rows, m.cols, m.block)
	if len(codes) != nc || len(absmax) != na {
		return fmt.Errorf("lora: %s: len(codes), len(absmax) are %d, %d, want %d, %d for %s in blocks of %d: %w",
			op, len(codes), len(absmax), nc, na, m.shape(), m.block, ErrShape)
	}
	if err := m.buf.readQuantized(codes, absmax); err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return nil
}

// Dequantize writes the values of the NF4 matrix src into dst, an F32, F16
// or BF16 matrix of the same shape, each rounded once to dst's dtype (to
// nearest even). A value that F16 cannot hold (65520 or more in magnitude)
// is refused with ErrNonFinite, naming the element, and nothing is
// written. This is how an NF4 W is merged: Dequantize it into a float
// matrix, and merge there.
func Dequantize(dst, src *Matrix) error {
	const op = "Dequantize"
	if err := dst.usable(op, "dst"); err != nil {
		return err
	}
	if err := src.usable(op, "src"); err != nil {
		return err
	}
	if src.dt != NF4 {
		return fmt.Errorf("lora: %s: src is %v, want NF4: %w", op, src.dt, ErrDType)
	}
	if err := wantFloat(op, "dst", dst); err != nil {
		return err
	}
	if dst.rows != src.rows || dst.cols != src.cols {
		return fmt.Errorf("lora: %s: dst is %s, want %s like src: %w", op, dst.shape(), src.shape(), ErrShape)
	}
	if dst.dt == F16 {
		if i, v, err := be.nf4Beyond(src, overflowAt(F16)); err != nil {
			return fmt.Errorf("lora: %s: %w", op, err)
		} else if i >= 0 {
			return fmt.Errorf("lora: %s: src[%d, %d] = %g is beyond float16's largest finite value 65504, nothing written: %w",
				op, i/src.cols, i%src.cols, v, ErrNonFinite)
		}
	}
	dst.forgetBound()
	if err := be.dequantize(dst, src); err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return nil
}
