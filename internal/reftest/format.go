package reftest

import "math"

// Format is a binary floating-point format, modelled in float64: P
// significand bits (the leading one included), Emin and Emax the exponents
// of the smallest normal and of the largest finite values; the exponent
// bias is Emax. Name is the name package lora gives its dtype.
//
// The model is written from the formats' definitions alone, sharing no
// code with the conversions under test: expected bit patterns are either
// written out in a test or computed here.
type Format struct {
	Name          string
	P, Emin, Emax int
}

// The formats of the library's dtypes. Encode and Decode take the 16-bit
// ones only.
var (
	F16  = Format{"f16", 11, -14, 15}   // IEEE 754 binary16
	BF16 = Format{"bf16", 8, -126, 127} // bfloat16: float32's exponent, 8 significand bits
	F32  = Format{"f32", 24, -126, 127} // IEEE 754 binary32
)

func (f Format) String() string { return f.Name }

// Largest returns the largest finite value, (2 − 2^(1−P))·2^Emax.
func (f Format) Largest() float64 { return (2 - math.Ldexp(1, 1-f.P)) * math.Ldexp(1, f.Emax) }

// ULP returns the spacing of the format's numbers at |v|: 2^(e−P+1) for |v|
// in [2^e, 2^(e+1)), and the subnormal spacing 2^(Emin−P+1) below 2^Emin.
func (f Format) ULP(v float64) float64 {
	e := f.Emin
	if v = math.Abs(v); v >= math.Ldexp(1, f.Emin) && !math.IsInf(v, 0) {
		_, x := math.Frexp(v) // v = m·2^x, m in [0.5, 1)
		e = max(x-1, f.Emin)
	}
	return math.Ldexp(1, e-f.P+1)
}

// Round rounds v to the format, to nearest, ties to even; a result beyond
// the largest finite value is ±Inf, NaN and ±Inf stay as they are, and the
// sign of a zero result is v's. |v|/ulp and its product by ulp are exact in
// float64 (powers of two), so the only rounding is RoundToEven's.
func (f Format) Round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	q := f.ULP(v)
	r := math.RoundToEven(math.Abs(v)/q) * q
	if r > f.Largest() {
		r = math.Inf(1)
	}
	return math.Copysign(r, v)
}

// bits returns the fraction bits and the all-ones exponent field of a
// 16-bit format: sign, 16−P exponent bits, P−1 fraction bits.
func (f Format) bits() (mb uint, expOnes uint16) {
	if f.P < 2 || f.P > 14 {
		panic("reftest: " + f.Name + " is not a 16-bit format")
	}
	mb = uint(f.P - 1)
	return mb, uint16(1)<<(15-mb) - 1
}

// Encode returns the 16-bit pattern of v, which must be a value of the
// format (a result of Round), ±Inf or NaN (the quiet NaN with no payload
// but the quiet bit).
func (f Format) Encode(v float64) uint16 {
	mb, expOnes := f.bits()
	var sign uint16
	if math.Signbit(v) {
		sign = 0x8000
	}
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return sign | expOnes<<mb | 1<<(mb-1)
	case math.IsInf(v, 0):
		return sign | expOnes<<mb
	case a < math.Ldexp(1, f.Emin):
		return sign | uint16(a/math.Ldexp(1, f.Emin-int(mb)))
	}
	_, e := math.Frexp(a)
	e--
	frac := a/math.Ldexp(1, e) - 1
	return sign | uint16(e+f.Emax)<<mb | uint16(frac*math.Ldexp(1, int(mb)))
}

// Decode returns the value of the 16-bit pattern h.
func (f Format) Decode(h uint16) float64 {
	mb, ones := f.bits()
	expOnes := int(ones)
	e := int(h>>mb) & expOnes
	frac := float64(h & (1<<mb - 1))
	var v float64
	switch e {
	case 0:
		v = frac * math.Ldexp(1, f.Emin-int(mb))
	case expOnes:
		v = math.Inf(1)
		if frac != 0 {
			v = math.NaN()
		}
	default:
		v = (1 + frac/math.Ldexp(1, int(mb))) * math.Ldexp(1, e-f.Emax)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}
