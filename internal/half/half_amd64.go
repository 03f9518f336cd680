//go:build amd64 && !purego

package half

import "golang.org/x/sys/cpu"

// The assembly is used where the processor has it; the portable form
// otherwise. AVX2 implies that the operating system saves the YMM registers.
var (
	useF16C = cpu.X86.HasAVX2 && cpu.X86.HasF16C
	useAVX2 = cpu.X86.HasAVX2
)

// f16ToF32F16C widens n > 0 elements with VCVTPH2PS.
//
//go:noescape
func f16ToF32F16C(dst *float32, src *uint16, n int)

// f32ToF16F16C narrows n > 0 elements with VCVTPS2PH, rounding to nearest even.
//
//go:noescape
func f32ToF16F16C(dst *uint16, src *float32, n int)

// bf16ToF32AVX2 widens n > 0 elements, 8 at a time, the rest in Go.
func bf16ToF32AVX2(dst *float32, src *uint16, n int) {
	m := n &^ 7
	if m > 0 {
		bf16ToF32x8(dst, src, m)
	}
	if m < n {
		d := unsafeSlice(dst, n)
		s := unsafeSlice(src, n)
		bf16ToF32Go(d[m:], s[m:])
	}
}

// f32ToBF16AVX2 narrows n > 0 elements, 16 at a time, the rest in Go.
func f32ToBF16AVX2(dst *uint16, src *float32, n int) {
	m := n &^ 15
	if m > 0 {
		f32ToBF16x16(dst, src, m)
	}
	if m < n {
		d := unsafeSlice(dst, n)
		s := unsafeSlice(src, n)
		f32ToBF16Go(d[m:], s[m:])
	}
}

// bf16ToF32x8 widens n elements, a multiple of 8, with AVX2.
//
//go:noescape
func bf16ToF32x8(dst *float32, src *uint16, n int)

// f32ToBF16x16 narrows n elements, a multiple of 16, with AVX2.
//
//go:noescape
func f32ToBF16x16(dst *uint16, src *float32, n int)
