package main

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/golora/lora/peft"
)

// nextNonFinite returns the index of the first element at or after from of
// data, in dtype d, that is NaN or ±Inf, or -1.
func nextNonFinite(data []byte, from int, d peft.DType) int {
	switch d {
	case peft.F64:
		for i := 8 * from; i+8 <= len(data); i += 8 {
			if binary.LittleEndian.Uint64(data[i:])&0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000 {
				return i / 8
			}
		}
	case peft.F32:
		for i := 4 * from; i+4 <= len(data); i += 4 {
			if binary.LittleEndian.Uint32(data[i:])&0x7f80_0000 == 0x7f80_0000 {
				return i / 4
			}
		}
	case peft.F16, peft.BF16:
		mask := uint16(0x7c00)
		if d == peft.BF16 {
			mask = 0x7f80
		}
		for i := 2 * from; i+2 <= len(data); i += 2 {
			if binary.LittleEndian.Uint16(data[i:])&mask == mask {
				return i / 2
			}
		}
	}
	return -1
}

// nonFiniteIndices appends to dst the indices of the elements of data, in
// dtype d, that are NaN or ±Inf, in increasing order.
func nonFiniteIndices(dst []int, data []byte, d peft.DType) []int {
	for i := nextNonFinite(data, 0, d); i >= 0; i = nextNonFinite(data, i+1, d) {
		dst = append(dst, i)
	}
	return dst
}

// newNonFinite returns the index of the first element of data, in dtype d,
// that is NaN or ±Inf and not in exempt (sorted indices of elements that
// were already non-finite in the input), or -1.
func newNonFinite(data []byte, d peft.DType, exempt []int) int {
	for i := nextNonFinite(data, 0, d); i >= 0; i = nextNonFinite(data, i+1, d) {
		if _, found := slices.BinarySearch(exempt, i); !found {
			return i
		}
	}
	return -1
}

// allFinite reports whether every value of v is finite.
func allFinite(v []float32) bool {
	for _, x := range v {
		if x-x != 0 {
			return false
		}
	}
	return true
}

// nonFiniteError says that element at of the tensor of j would be NaN or
// ±Inf in the output, v being its value as float32 before the rounding to
// the output dtype, computed by what ("the merge" or "the conversion").
// produce prefixes the tensor's name.
func nonFiniteError(j *job, at int64, v float32, what string) error {
	where := fmt.Sprintf("element %d", at)
	if len(j.in.Shape) == 2 {
		cols := int64(j.in.Shape[1])
		where = fmt.Sprintf("element [%d, %d]", at/cols, at%cols)
	}
	got, why := "+Inf", fmt.Sprintf("gives %v, beyond the range of %s (±%s)", v, j.out.DType, maxFiniteText(j.out.DType))
	switch {
	case v != v:
		got, why = "NaN", "gives NaN"
	case v < 0:
		got = "-Inf"
	}
	return fmt.Errorf("the %s output would hold %s at %s, where the base tensor is finite: %s there %s",
		j.out.DType, got, where, what, why)
}

// maxFiniteText returns the largest finite value of the float dtype d, as
// text for an error message.
func maxFiniteText(d peft.DType) string {
	switch d {
	case peft.F16:
		return "65504"
	case peft.BF16:
		return "3.3895e+38"
	case peft.F64:
		return "1.7977e+308"
	}
	return "3.4028e+38"
}
