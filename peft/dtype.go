package peft

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/golora/lora/internal/half"
)

// DType is a safetensors element type, spelled as in the file header.
type DType string

// The element types of the safetensors format. Every one can be read, copied
// and written; F64, F32, F16 and BF16 can also be converted to and from float32.
const (
	BOOL    DType = "BOOL"
	U8      DType = "U8"
	I8      DType = "I8"
	F8E5M2  DType = "F8_E5M2"
	F8E4M3  DType = "F8_E4M3"
	F8E8M0  DType = "F8_E8M0"
	I16     DType = "I16"
	U16     DType = "U16"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I32     DType = "I32"
	U32     DType = "U32"
	F32     DType = "F32"
	F64     DType = "F64"
	I64     DType = "I64"
	U64     DType = "U64"
	C64     DType = "C64"
	invalid DType = ""
)

// dtypeInfo gives each known dtype its size in bytes and its rank in the
// order the reference implementation writes tensors (larger rank first).
var dtypeInfo = map[DType]struct{ size, rank int }{
	BOOL:   {1, 0},
	U8:     {1, 1},
	I8:     {1, 2},
	F8E5M2: {1, 3},
	F8E4M3: {1, 4},
	F8E8M0: {1, 5},
	I16:    {2, 6},
	U16:    {2, 7},
	F16:    {2, 8},
	BF16:   {2, 9},
	I32:    {4, 10},
	U32:    {4, 11},
	F32:    {4, 12},
	F64:    {8, 13},
	I64:    {8, 14},
	U64:    {8, 15},
	C64:    {8, 16},
}

// Size returns the size of one element in bytes, or 0 for an unknown dtype.
func (d DType) Size() int { return dtypeInfo[d].size }

// Valid reports whether d is a dtype this package knows.
func (d DType) Valid() bool { return d.Size() > 0 }

// Float reports whether elements of d convert to and from float32:
// F64, F32, F16 and BF16.
func (d DType) Float() bool {
	switch d {
	case F64, F32, F16, BF16:
		return true
	}
	return false
}

// ParseDType returns the dtype named s, case-insensitively ("bf16", "F32").
func ParseDType(s string) (DType, error) {
	for d := range dtypeInfo {
		if equalFold(string(d), s) {
			return d, nil
		}
	}
	return invalid, fmt.Errorf("peft: unknown dtype %s", quote(s))
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// DecodeFloats converts the little-endian elements of src, of dtype d, into
// dst. d must be F64, F32, F16 or BF16, and len(src) must be
// len(dst)·d.Size(). The conversion to float32 is exact for F32, F16 and
// BF16 (a NaN becomes quiet, as F16ToFloat32 says), and rounds to nearest
// even for F64.
func DecodeFloats(dst []float32, src []byte, d DType) error {
	if !d.Float() {
		return fmt.Errorf("peft: cannot convert %s to float32", d)
	}
	if len(src) != len(dst)*d.Size() {
		return fmt.Errorf("peft: %d bytes of %s for %d elements", len(src), d, len(dst))
	}
	le := binary.LittleEndian
	switch d {
	case F32:
		if littleEndian {
			copy(Float32Bytes(dst), src)
			break
		}
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case F16:
		if h, ok := nativeUint16(src); ok {
			half.F16ToF32(dst, h)
			break
		}
		for i := range dst {
			dst[i] = half.F16ToFloat32(le.Uint16(src[2*i:]))
		}
	case BF16:
		if h, ok := nativeUint16(src); ok {
			half.BF16ToF32(dst, h)
			break
		}
		for i := range dst {
			dst[i] = half.BF16ToFloat32(le.Uint16(src[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	}
	return nil
}

// EncodeFloats converts src into little-endian elements of dtype d in dst,
// rounding to nearest even where d is narrower than float32 (F16, BF16).
// d must be F64, F32, F16 or BF16, and len(dst) must be len(src)·d.Size().
func EncodeFloats(dst []byte, src []float32, d DType) error {
	if !d.Float() {
		return fmt.Errorf("peft: cannot convert float32 to %s", d)
	}
	if len(dst) != len(src)*d.Size() {
		return fmt.Errorf("peft: %d bytes of %s for %d elements", len(dst), d, len(src))
	}
	le := binary.LittleEndian
	switch d {
	case F32:
		if littleEndian {
			copy(dst, Float32Bytes(src))
			break
		}
		for i, v := range src {
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		if h, ok := nativeUint16(dst); ok {
			half.F32ToF16(h, src)
			break
		}
		for i, v := range src {
			le.PutUint16(dst[2*i:], half.Float32ToF16(v))
		}
	case BF16:
		if h, ok := nativeUint16(dst); ok {
			half.F32ToBF16(h, src)
			break
		}
		for i, v := range src {
			le.PutUint16(dst[2*i:], half.Float32ToBF16(v))
		}
	case F64:
		for i, v := range src {
			le.PutUint64(dst[8*i:], math.Float64bits(float64(v)))
		}
	}
	return nil
}

// littleEndian reports whether this machine stores numbers as safetensors
// does, so that F32 data is float32 memory as it is.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Float32Bytes returns the memory of v as bytes, without a copy: on a
// little-endian machine, the F32 safetensors encoding of v. Reading F32 data
// into it, or writing it out, saves a conversion pass; see NativeF32.
func Float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}

// NativeF32 reports whether Float32Bytes of a []float32 is its F32
// encoding, as on every little-endian machine.
func NativeF32() bool { return littleEndian }

// nativeUint16 returns the memory of b as 16-bit numbers, without a copy,
// when they are its little-endian 16-bit elements: on a little-endian
// machine, for a b of even length at an even address. ok is false otherwise,
// and for an empty b.
func nativeUint16(b []byte) (h []uint16, ok bool) {
	if !littleEndian || len(b) == 0 || len(b)%2 != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%2 != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2), true
}

// F16ToFloat32 returns the value of the IEEE 754 half-precision number h,
// exactly. A NaN keeps its sign and payload and becomes quiet (the payload's
// leading bit set), as the F16C instruction VCVTPH2PS makes it.
func F16ToFloat32(h uint16) float32 { return half.F16ToFloat32(h) }

// Float32ToF16 rounds f to the nearest IEEE 754 half-precision number, ties
// to even, as PyTorch's tensor.to(torch.float16) does: values beyond the
// largest half round to ±Inf, tiny ones to subnormals or ±0. A NaN becomes a
// quiet NaN with its sign and the high bits of its payload, as the F16C
// instruction VCVTPS2PH makes it.
func Float32ToF16(f float32) uint16 { return half.Float32ToF16(f) }

// Float32ToBF16 rounds f to the nearest bfloat16, ties to even, as
// PyTorch's tensor.to(torch.bfloat16) does. A NaN becomes a quiet NaN with
// its sign and the high bits of its payload.
func Float32ToBF16(f float32) uint16 { return half.Float32ToBF16(f) }

// BF16ToFloat32 returns the value of the bfloat16 h, exactly. A NaN keeps
// its sign and payload and becomes quiet, as in F16ToFloat32.
func BF16ToFloat32(h uint16) float32 { return half.BF16ToFloat32(h) }
