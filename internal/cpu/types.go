package cpu

import "github.com/golora/lora/internal/half"

// Type is the element type of an operand.
type Type uint8

// The element types: float32, and the two 16-bit formats, held as patterns.
const (
	F32  Type = iota // float32
	F16              // IEEE 754 binary16
	BF16             // bfloat16
)

// half reports whether t is a 16-bit type.
func (t Type) half() bool { return t == F16 || t == BF16 }

// Mat is a dense, row-major Rows×Cols matrix in host memory: an F32 one's
// elements in F32, an F16 or BF16 one's patterns in Bits.
type Mat struct {
	Rows, Cols int
	Type       Type
	F32        []float32
	Bits       []uint16
}

// widenHalf widens the patterns of src (dtype dt) into dst, exactly.
func widenHalf(dt Type, dst []float32, src []uint16) {
	if dt == F16 {
		half.F16ToF32(dst, src)
		return
	}
	half.BF16ToF32(dst, src)
}

// narrowHalf rounds src into the patterns of dst (dtype dt), to nearest even.
func narrowHalf(dt Type, dst []uint16, src []float32) {
	if dt == F16 {
		half.F32ToF16(dst, src)
		return
	}
	half.F32ToBF16(dst, src)
}

// widen1 returns the float32 value of one pattern of dtype dt.
func widen1(dt Type, h uint16) float32 {
	if dt == F16 {
		return half.F16ToFloat32(h)
	}
	return half.BF16ToFloat32(h)
}
