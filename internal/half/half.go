// Package half converts between float32 and the two 16-bit floating-point
// formats of model weights: IEEE 754 binary16 (F16) and bfloat16 (BF16).
//
// The slice conversions work like the built-in copy: they convert
// min(len(dst), len(src)) elements and return that count. On amd64 with
// F16C and AVX2 the F16 conversions run the VCVTPH2PS and VCVTPS2PH
// instructions; elsewhere, and always under the purego build tag, a
// portable form gives the same bits.
//
// Rounding and special values, the same in every form:
//   - Widening (F16 or BF16 to float32) is exact.
//   - Narrowing (float32 to F16 or BF16) rounds to nearest, ties to even.
//     Finite values beyond the format's range become ±Inf (these are raw
//     conversions: refusing overflow is the caller's job), values below half
//     the smallest subnormal become ±0, ±Inf and ±0 are kept.
//   - The NaN rule: a NaN converts to a quiet NaN with the same sign and the
//     high bits of its payload, as the F16C instructions do: the payload's
//     leading bit (the quiet bit) is set, the other bits kept as far as they
//     fit. So a quiet NaN survives a round trip through float32 bit for
//     bit, and a signalling one comes back quiet.
package half

import "math"

// Scalar conversions. They are the portable form, bit for bit.

// F16ToFloat32 returns the float32 value of the binary16 pattern h.
func F16ToFloat32(h uint16) float32 {
	// Placing the 15 bits of magnitude at the top of a float32's exponent
	// and mantissa and scaling by 2^(127−15) is exact for every finite
	// binary16, subnormals included (they become float32 subnormals,
	// normalised by the multiplication).
	o := uint32(h&0x7fff) << 13
	sign := uint32(h&0x8000) << 16
	if o >= 0x7c00<<13 { // Inf or NaN
		o += (255 - 31) << 23
		if o != 0x7f800000 {
			o |= 0x400000 // quiet
		}
		return math.Float32frombits(sign | o)
	}
	return math.Float32frombits(sign | math.Float32bits(math.Float32frombits(o)*0x1p112))
}

// Float32ToF16 rounds f to the nearest binary16, ties to even.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(man>>13)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// A binary16 subnormal: f is m·2^(exp−150) with the 24-bit
		// significand m, that is m·2^(exp−126) units of 2⁻²⁴.
		if e < -10 {
			return sign // at most half the smallest subnormal: rounds to ±0
		}
		m := man | 0x800000
		shift := uint(14 - e)
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && r&1 == 1 {
			r++ // may carry into the smallest normal, which encodes correctly
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && r&1 == 1 {
		r++ // may carry into the exponent, up to Inf, which is right
	}
	return sign | uint16(r)
}

// BF16ToFloat32 returns the float32 value of the bfloat16 pattern h.
func BF16ToFloat32(h uint16) float32 {
	b := uint32(h) << 16
	// Set the quiet bit of a NaN without a branch: 0x7f800000 − |b|
	// borrows exactly when |b| is a NaN.
	b |= (0x7f800000 - b&0x7fffffff) >> 31 << 22
	return math.Float32frombits(b)
}

// Float32ToBF16 rounds f to the nearest bfloat16, ties to even.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// F16ToF32 widens the binary16 patterns of src into dst, exactly, and
// returns the number of elements converted, min(len(dst), len(src)).
func F16ToF32(dst []float32, src []uint16) int {
	n := min(len(dst), len(src))
	if n == 0 {
		return 0
	}
	if useF16C {
		f16ToF32F16C(&dst[0], &src[0], n)
		return n
	}
	f16ToF32Go(dst[:n], src[:n])
	return n
}

// F32ToF16 rounds src to binary16 patterns in dst, to nearest even, and
// returns the number of elements converted, min(len(dst), len(src)).
func F32ToF16(dst []uint16, src []float32) int {
	n := min(len(dst), len(src))
	if n == 0 {
		return 0
	}
	if useF16C {
		f32ToF16F16C(&dst[0], &src[0], n)
		return n
	}
	f32ToF16Go(dst[:n], src[:n])
	return n
}

// BF16ToF32 widens the bfloat16 patterns of src into dst, exactly, and
// returns the number of elements converted, min(len(dst), len(src)).
func BF16ToF32(dst []float32, src []uint16) int {
	n := min(len(dst), len(src))
	if n == 0 {
		return 0
	}
	if useAVX2 {
		bf16ToF32AVX2(&dst[0], &src[0], n)
		return n
	}
	bf16ToF32Go(dst[:n], src[:n])
	return n
}

// F32ToBF16 rounds src to bfloat16 patterns in dst, to nearest even, and
// returns the number of elements converted, min(len(dst), len(src)).
func F32ToBF16(dst []uint16, src []float32) int {
	n := min(len(dst), len(src))
	if n == 0 {
		return 0
	}
	if useAVX2 {
		f32ToBF16AVX2(&dst[0], &src[0], n)
		return n
	}
	f32ToBF16Go(dst[:n], src[:n])
	return n
}

// The portable slice forms; dst and src have the same length.

func f16ToF32Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = F16ToFloat32(h)
	}
}

func f32ToF16Go(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		dst[i] = Float32ToF16(f)
	}
}

func bf16ToF32Go(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		b := uint32(h) << 16
		dst[i] = math.Float32frombits(b | (0x7f800000-b&0x7fffffff)>>31<<22)
	}
}

func f32ToBF16Go(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		dst[i] = Float32ToBF16(f)
	}
}
