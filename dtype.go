package lora

import (
	"fmt"
	"math"
)

// DType is the element type of a Matrix. Every Matrix computes in float32:
// a 16-bit or NF4 element is widened exactly to float32 where it is read,
// products and sums accumulate in float32, and each element a computation
// writes is rounded once, to nearest even, to its matrix's dtype.
type DType int

// The element types.
const (
	F32  DType = iota // float32
	F16               // IEEE 754 binary16: 5 exponent bits, 10 fraction bits; largest finite 65504
	BF16              // bfloat16: float32's 8 exponent bits, 7 fraction bits
	// NF4 is bitsandbytes' 4-bit NormalFloat, the base weights of QLoRA: a
	// weight-only dtype (see Quantize). Each element is a 4-bit code into
	// bitsandbytes' NF4 table, its value the table's entry times the
	// float32 absmax of its block of BlockSize consecutive elements.
	NF4
)

// String returns "f32", "f16", "bf16" or "nf4" ("DType(n)" for any other
// value).
func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	case NF4:
		return "nf4"
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// Size returns the bytes of one element: 4, 2 or 2; 0 for NF4, whose
// elements take half a byte each (and a float32 absmax per block), and for
// an unknown DType.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

// long returns the type's name in messages: float32, float16, bfloat16,
// nf4.
func (d DType) long() string {
	switch d {
	case F16:
		return "float16"
	case BF16:
		return "bfloat16"
	case NF4:
		return "nf4"
	}
	return "float32"
}

// valid reports whether d is one of F32, F16 and BF16: a dtype of every
// operand, and one that NewMatrixOf makes.
func (d DType) valid() bool { return d == F32 || d == F16 || d == BF16 }

// half reports whether d is a 16-bit type.
func (d DType) half() bool { return d == F16 || d == BF16 }

// maxFinite returns the largest finite value of dt.
func maxFinite(dt DType) float64 {
	switch dt {
	case F16:
		return 65504
	case BF16:
		return 0x1.fep127
	}
	return math.MaxFloat32
}

// roundedBound returns a bound on the magnitude of any value at most v in
// magnitude once rounded to nearest in dt: a relative half ulp more for the
// normal numbers (2⁻¹¹ for F16, 2⁻⁸ for BF16), plus half the smallest
// subnormal for the rest. For F32, v itself: mergeMargin covers float32's
// roundings.
func roundedBound(dt DType, v float64) float64 {
	switch dt {
	case F16:
		return v*(1+0x1p-11) + 0x1p-25
	case BF16:
		return v*(1+0x1p-8) + 0x1p-134
	}
	return v
}

// overflowAt returns the smallest float32 magnitude that rounds to ±Inf in
// dt, to nearest even: the largest finite value plus half its ulp, a tie
// that goes to the even neighbour, Inf, since the largest finite value's
// last fraction bit is 1. For F32 every finite float32 is finite.
func overflowAt(dt DType) float32 {
	switch dt {
	case F16:
		return 65520
	case BF16:
		return 0x1.ffp127
	}
	return float32(math.Inf(1))
}

// NewMatrixOf returns a zero-filled rows×cols matrix of element type dt.
// NewMatrixOf(F32, rows, cols) is NewMatrix(rows, cols).
func NewMatrixOf(dt DType, rows, cols int) (*Matrix, error) {
	const op = "NewMatrixOf"
	if !dt.valid() {
		return nil, fmt.Errorf("lora: %s: %v, want F32, F16 or BF16: %w", op, dt, ErrDType)
	}
	return newMatrixOf(op, dt, rows, cols, nil)
}

// DType returns the element type of the matrix: F32 for a nil or zero Matrix.
func (m *Matrix) DType() DType {
	if m == nil {
		return F32
	}
	return m.dt
}

// ReadBits copies the stored 16-bit patterns of an F16 or BF16 matrix,
// row-major, into dst, which must have exactly rows·cols elements. It
// refuses an F32 matrix with ErrDType. Like Read, it waits for queued work.
func (m *Matrix) ReadBits(dst []uint16) error {
	const op = "ReadBits"
	if err := m.bitsArg(op, len(dst), "dst"); err != nil {
		return err
	}
	if err := m.buf.readBits(dst); err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return nil
}

// WriteBits stores src, row-major with exactly rows·cols elements, as the
// 16-bit patterns of an F16 or BF16 matrix, as they are: any pattern,
// NaN and ±Inf included. It refuses an F32 matrix with ErrDType.
func (m *Matrix) WriteBits(src []uint16) error {
	const op = "WriteBits"
	if err := m.bitsArg(op, len(src), "src"); err != nil {
		return err
	}
	m.forgetBound()
	if err := m.buf.writeBits(src); err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return nil
}

// bitsArg checks the arguments of ReadBits and WriteBits.
func (m *Matrix) bitsArg(op string, n int, name string) error {
	if err := m.usable(op, "m"); err != nil {
		return err
	}
	if !m.dt.half() {
		return fmt.Errorf("lora: %s: m is %v, want F16 or BF16: %w", op, m.dt, ErrDType)
	}
	if n != m.rows*m.cols {
		return fmt.Errorf("lora: %s: len(%s) is %d, want %d×%d = %d: %w",
			op, name, n, m.rows, m.cols, m.rows*m.cols, ErrShape)
	}
	return nil
}

// checkRange refuses, for Write into a matrix of dtype dt, a finite value
// that would round to ±Inf, naming the first one.
func checkRange(op string, dt DType, src []float32) error {
	if !dt.half() {
		return nil
	}
	lim := overflowAt(dt)
	for i, v := range src {
		if a := float32(math.Abs(float64(v))); a >= lim && a <= math.MaxFloat32 {
			return fmt.Errorf("lora: %s: src[%d] = %g rounds to %s in %v (whose largest finite value is %g: a magnitude of %g or more rounds to ±Inf), nothing written: %w",
				op, i, v, signedInf(v), dt, maxFinite(dt), overflowAt(dt), ErrNonFinite)
		}
	}
	return nil
}

// wantFloat refuses an NF4 matrix where only a float dtype is taken (an
// activation, a gradient, a bias, a target), naming it.
func wantFloat(op, name string, m *Matrix) error {
	if m != nil && m.dt == NF4 {
		return fmt.Errorf("lora: %s: %s is nf4, want F32, F16 or BF16: only a base weight W may be NF4: %w", op, name, ErrDType)
	}
	return nil
}

// wantF32 refuses a matrix that must be float32 (an adapter, a gradient of
// one), naming it.
func wantF32(op, name string, m *Matrix) error {
	if m != nil && m.dt != F32 {
		return fmt.Errorf("lora: %s: %s is %v, want F32: %w", op, name, m.dt, ErrDType)
	}
	return nil
}

// signedInf returns "+Inf" or "-Inf", the infinity of v's sign.
func signedInf(v float32) string {
	if math.Signbit(float64(v)) {
		return "-Inf"
	}
	return "+Inf"
}
