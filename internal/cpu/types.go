package cpu

import (
	"sync/atomic"

	"github.com/golora/lora/internal/half"
)

// Type is the element type of an operand.
type Type uint8

// The element types: float32, the two 16-bit formats, held as patterns,
// and bitsandbytes' 4-bit NormalFloat, held as codes and a scale per block.
const (
	F32  Type = iota // float32
	F16              // IEEE 754 binary16
	BF16             // bfloat16
	NF4              // 4-bit codes into NF4Table, times the absmax of their block
)

// half reports whether t is a 16-bit type.
func (t Type) half() bool { return t == F16 || t == BF16 }

// Mat is a dense, row-major Rows×Cols matrix in host memory: an F32 one's
// elements in F32, an F16 or BF16 one's patterns in Bits, an NF4 one's
// codes in Codes (two a byte, the element of even flat index in the high
// nibble) and the float32 scale of each Block consecutive elements (of the
// row-major order: a block may straddle rows) in Absmax.
type Mat struct {
	Rows, Cols int
	Type       Type
	F32        []float32
	Bits       []uint16
	Codes      []byte
	Absmax     []float32
	Block      int

	// Least, when not nil, caches the least nonzero magnitude among the
	// patterns of a BF16 matrix for the bf16 product's check (bf16Safe):
	// 0 while unknown, else 1<<16 | that pattern (0 when every value is
	// zero). Its owner stores 0 whenever the matrix changes; bf16Run fills
	// it after a call that read every value of W, and while it is known
	// reads W's tiles in place without finding their least magnitude
	// again.
	Least *atomic.Uint32
}

// widen writes the float32 values of the n elements of m from flat index
// flat0 on (row-major) into dst[:n]: exactly, for every type.
func (m *Mat) widen(dst []float32, flat0, n int) {
	switch m.Type {
	case F32:
		copy(dst[:n], m.F32[flat0:flat0+n])
	case NF4:
		DequantizeNF4(dst[:n], m.Codes, m.Absmax, m.Block, flat0)
	default:
		widenHalf(m.Type, dst[:n], m.Bits[flat0:flat0+n])
	}
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
