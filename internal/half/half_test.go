package half

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// impl is one form of the four slice conversions, for dst and src of the
// same length.
type impl struct {
	name      string
	f16ToF32  func([]float32, []uint16)
	f32ToF16  func([]uint16, []float32)
	bf16ToF32 func([]float32, []uint16)
	f32ToBF16 func([]uint16, []float32)
}

// impls lists the forms under test: the exported functions, whichever form
// they pick here, the portable form, and the scalar functions. The amd64
// tests add the assembly where the processor has it.
var impls = []impl{
	{"exported",
		func(d []float32, s []uint16) { F16ToF32(d, s) },
		func(d []uint16, s []float32) { F32ToF16(d, s) },
		func(d []float32, s []uint16) { BF16ToF32(d, s) },
		func(d []uint16, s []float32) { F32ToBF16(d, s) }},
	{"portable", f16ToF32Go, f32ToF16Go, bf16ToF32Go, f32ToBF16Go},
	{"scalar",
		func(d []float32, s []uint16) {
			for i := range d {
				d[i] = F16ToFloat32(s[i])
			}
		},
		func(d []uint16, s []float32) {
			for i := range d {
				d[i] = Float32ToF16(s[i])
			}
		},
		func(d []float32, s []uint16) {
			for i := range d {
				d[i] = BF16ToFloat32(s[i])
			}
		},
		func(d []uint16, s []float32) {
			for i := range d {
				d[i] = Float32ToBF16(s[i])
			}
		}},
}

// refWiden returns the float32 bits of the 16-bit pattern h of a format
// with manBits mantissa bits and the given exponent bias, computed in
// float64 from the definition; a NaN is quieted by the package's rule.
func refWiden(h uint16, manBits, bias int) uint32 {
	expBits := 15 - manBits
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>manBits) & (1<<expBits - 1)
	m := uint32(h) & (1<<manBits - 1)
	var v float64
	switch {
	case e == 1<<expBits-1 && m != 0: // NaN
		return uint32(h&0x8000)<<16 | 0x7f800000 | 0x400000 | m<<(23-manBits)
	case e == 1<<expBits-1:
		v = math.Inf(1)
	case e == 0:
		v = math.Ldexp(float64(m), 1-bias-manBits)
	default:
		v = math.Ldexp(float64(m|1<<manBits), e-bias-manBits)
	}
	w := sign * v
	if float64(float32(w)) != w {
		panic(fmt.Sprintf("%#04x is not a float32", h))
	}
	return math.Float32bits(float32(w))
}

// refNarrow rounds f to the nearest value of a format with manBits mantissa
// bits and the given exponent bias, ties to even, in float64 arithmetic:
// scaled by its quantum, f becomes an integer plus a fraction that
// math.RoundToEven rounds. Values from the largest finite value plus half
// a quantum on become Inf. A NaN follows the package's rule.
func refNarrow(f float32, manBits, bias int) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	expBits := 15 - manBits
	inf := uint16(1<<expBits-1) << manBits
	if f != f {
		return sign | inf | 1<<(manBits-1) | uint16(b&0x7fffff>>(23-manBits))
	}
	a := math.Abs(float64(f))
	emax := 1<<expBits - 2 - bias
	limit := math.Ldexp(2-math.Ldexp(1, -manBits-1), emax) // max + half an ulp
	if a >= limit {
		return sign | inf
	}
	emin := 1 - bias
	if a < math.Ldexp(1, emin) {
		r := math.RoundToEven(a / math.Ldexp(1, emin-manBits))
		return sign | uint16(r) // r = 1<<manBits is the smallest normal
	}
	_, e := math.Frexp(a) // a = frac·2^e, frac in [0.5, 1)
	e--
	r := math.RoundToEven(a / math.Ldexp(1, e-manBits))
	return sign | uint16(e+bias)<<manBits + uint16(r) - 1<<manBits
}

func refF16(f float32) uint16  { return refNarrow(f, 10, 15) }
func refBF16(f float32) uint16 { return refNarrow(f, 7, 127) }

func TestReferenceSelfCheck(t *testing.T) {
	// The references against values written out by hand.
	for _, c := range []struct {
		f        float32
		f16, b16 uint16
	}{
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{65504, 0x7bff, 0x4780},
		{0x1p-24, 0x0001, 0x3380},
		{float32(math.Inf(-1)), 0xfc00, 0xff80},
	} {
		if g := refF16(c.f); g != c.f16 {
			t.Errorf("refF16(%g) = %#04x, want %#04x", c.f, g, c.f16)
		}
		if g := refBF16(c.f); g != c.b16 {
			t.Errorf("refBF16(%g) = %#04x, want %#04x", c.f, g, c.b16)
		}
	}
	if g := refWiden(0x3555, 10, 15); g != math.Float32bits(0x1.554p-2) {
		t.Errorf("refWiden(0x3555) = %#08x", g)
	}
}

// TestWidenAll widens every one of the 65536 patterns of both formats.
func TestWidenAll(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	for _, im := range impls {
		for _, fm := range []struct {
			name          string
			conv          func([]float32, []uint16)
			manBits, bias int
		}{{"F16", im.f16ToF32, 10, 15}, {"BF16", im.bf16ToF32, 7, 127}} {
			dst := make([]float32, len(src))
			fm.conv(dst, src)
			bad := 0
			for i, h := range src {
				want := refWiden(h, fm.manBits, fm.bias)
				if got := math.Float32bits(dst[i]); got != want {
					if bad++; bad <= 5 {
						t.Errorf("%s %sToF32(%#04x) = %#08x, want %#08x", im.name, fm.name, h, got, want)
					}
				}
			}
		}
	}
}

// narrowCases are float32 bit patterns with their F16 and BF16 roundings,
// written out by hand.
var narrowCases = []struct {
	what     string
	f        uint32
	f16, b16 uint16
}{
	{"+0", 0x00000000, 0x0000, 0x0000},
	{"-0", 0x80000000, 0x8000, 0x8000},
	{"1", 0x3f800000, 0x3c00, 0x3f80},
	// F16 ties: 1 + 2⁻¹¹ lies between 0x3c00 (even) and 0x3c01: down;
	// 1 + 3·2⁻¹¹ between 0x3c01 and 0x3c02 (even): up.
	{"F16 tie to even below", 0x3f801000, 0x3c00, 0x3f80},
	{"F16 tie to even above", 0x3f803000, 0x3c02, 0x3f80},
	{"F16 just above a tie", 0x3f801001, 0x3c01, 0x3f80},
	{"F16 just below a tie", 0x3f802fff, 0x3c01, 0x3f80},
	{"-F16 tie to even above", 0xbf803000, 0xbc02, 0xbf80},
	// BF16 ties: 1 + 2⁻⁸ between 0x3f80 (even) and 0x3f81: down;
	// 1 + 3·2⁻⁸ between 0x3f81 and 0x3f82: up.
	{"BF16 tie to even below", 0x3f808000, 0x3c04, 0x3f80},
	{"BF16 tie to even above", 0x3f818000, 0x3c0c, 0x3f82},
	{"BF16 just above a tie", 0x3f808001, 0x3c04, 0x3f81},
	{"-BF16 tie to even above", 0xbf818000, 0xbc0c, 0xbf82},
	// Largest finite values and the first that overflows.
	{"F16 max 65504", 0x477fe000, 0x7bff, 0x4780},
	{"65519, below F16's overflow tie", 0x477fefff, 0x7bff, 0x4780},
	{"65520, F16's overflow tie", 0x477ff000, 0x7c00, 0x4780},
	{"-65520", 0xc77ff000, 0xfc00, 0xc780},
	{"float32 max", 0x7f7fffff, 0x7c00, 0x7f80},
	{"BF16 max", 0x7f7f0000, 0x7c00, 0x7f7f},
	{"below BF16's overflow tie", 0x7f7f7fff, 0x7c00, 0x7f7f},
	{"BF16's overflow tie", 0x7f7f8000, 0x7c00, 0x7f80},
	{"-BF16's overflow tie", 0xff7f8000, 0xfc00, 0xff80},
	// Subnormals.
	{"F16 smallest subnormal 2⁻²⁴", 0x33800000, 0x0001, 0x3380},
	{"half of it, a tie to 0", 0x33000000, 0x0000, 0x3300},
	{"just above half of it", 0x33000001, 0x0001, 0x3300},
	{"-just above half of it", 0xb3000001, 0x8001, 0xb300},
	{"1.5·2⁻²⁴, a tie to 2", 0x33c00000, 0x0002, 0x33c0},
	{"2.5·2⁻²⁴, a tie to 2", 0x34200000, 0x0002, 0x3420},
	{"F16 largest subnormal", 0x387fc000, 0x03ff, 0x3880},
	{"rounds up to F16's smallest normal", 0x387fe000, 0x0400, 0x3880},
	{"F16 smallest normal 2⁻¹⁴", 0x38800000, 0x0400, 0x3880},
	{"float32 smallest subnormal", 0x00000001, 0x0000, 0x0000},
	{"float32 largest subnormal", 0x007fffff, 0x0000, 0x0080},
	{"BF16 smallest subnormal", 0x00010000, 0x0000, 0x0001},
	{"half of it, a tie to 0", 0x00008000, 0x0000, 0x0000},
	{"just above half of it", 0x00008001, 0x0000, 0x0001},
	{"BF16 subnormal tie to even above", 0x00018000, 0x0000, 0x0002},
	// Infinities and NaNs: quiet, sign and high payload kept.
	{"+Inf", 0x7f800000, 0x7c00, 0x7f80},
	{"-Inf", 0xff800000, 0xfc00, 0xff80},
	{"quiet NaN", 0x7fc00000, 0x7e00, 0x7fc0},
	{"-quiet NaN", 0xffc00000, 0xfe00, 0xffc0},
	{"signalling NaN, low payload", 0x7f800001, 0x7e00, 0x7fc0},
	{"signalling NaN, high payload", 0x7fa00000, 0x7f00, 0x7fe0},
	{"-NaN with payload", 0xff812345, 0xfe09, 0xffc1},
	{"quiet NaN with payload", 0x7fd5a000, 0x7ead, 0x7fd5},
}

func TestNarrowCases(t *testing.T) {
	for _, c := range narrowCases {
		f := math.Float32frombits(c.f)
		if g := refF16(f); g != c.f16 {
			t.Errorf("%s: refF16(%#08x) = %#04x, table says %#04x", c.what, c.f, g, c.f16)
		}
		if g := refBF16(f); g != c.b16 {
			t.Errorf("%s: refBF16(%#08x) = %#04x, table says %#04x", c.what, c.f, g, c.b16)
		}
		for _, im := range impls {
			h := make([]uint16, 1)
			im.f32ToF16(h, []float32{f})
			if h[0] != c.f16 {
				t.Errorf("%s: %s F32ToF16(%#08x) = %#04x, want %#04x", c.what, im.name, c.f, h[0], c.f16)
			}
			im.f32ToBF16(h, []float32{f})
			if h[0] != c.b16 {
				t.Errorf("%s: %s F32ToBF16(%#08x) = %#04x, want %#04x", c.what, im.name, c.f, h[0], c.b16)
			}
		}
	}
}

// sweep returns n random float32 patterns, the narrowCases among them.
func sweep(n int) []float32 {
	rng := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(rng.Uint32())
	}
	for i, c := range narrowCases {
		if i*7 < n {
			v[i*7] = math.Float32frombits(c.f)
		}
	}
	return v
}

// TestNarrowSweep narrows a million random float32 patterns.
func TestNarrowSweep(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	src := sweep(n)
	w16 := make([]uint16, n)
	wb16 := make([]uint16, n)
	for i, f := range src {
		w16[i], wb16[i] = refF16(f), refBF16(f)
	}
	for _, im := range impls {
		got := make([]uint16, n)
		for _, fm := range []struct {
			name string
			conv func([]uint16, []float32)
			want []uint16
		}{{"F32ToF16", im.f32ToF16, w16}, {"F32ToBF16", im.f32ToBF16, wb16}} {
			fm.conv(got, src)
			bad := 0
			for i := range got {
				if got[i] != fm.want[i] {
					if bad++; bad <= 5 {
						t.Errorf("%s %s(%#08x) = %#04x, want %#04x", im.name, fm.name, math.Float32bits(src[i]), got[i], fm.want[i])
					}
				}
			}
		}
	}
}

// TestRoundTripNaN: every NaN pattern of either format comes back from
// float32 quiet, with its sign and payload.
func TestRoundTripNaN(t *testing.T) {
	for _, fm := range []struct {
		name     string
		inf, qb  uint16
		widen    func(uint16) float32
		narrowed func(float32) uint16
	}{{"F16", 0x7c00, 0x200, F16ToFloat32, Float32ToF16}, {"BF16", 0x7f80, 0x40, BF16ToFloat32, Float32ToBF16}} {
		for h := fm.inf + 1; h <= fm.inf|(fm.inf-1)&^fm.inf && h > fm.inf; h++ {
			for _, s := range []uint16{0, 0x8000} {
				if got := fm.narrowed(fm.widen(h | s)); got != h|s|fm.qb {
					t.Fatalf("%s NaN %#04x came back as %#04x", fm.name, h|s, got)
				}
			}
		}
	}
}

// TestLengths converts every length 0..33, so that each tail length of
// the vector loops is met, at offsets 0 and 1, with dst and src of
// different lengths; nothing beyond the shorter one is written.
func TestLengths(t *testing.T) {
	vals := sweep(64)
	for n := 0; n <= 33; n++ {
		for _, off := range []int{0, 1} {
			for _, extra := range []int{0, 3} {
				src := vals[off : off+n]
				h := make([]uint16, n+extra+1)
				const guard = 0xbeef
				for i := range h {
					h[i] = guard
				}
				if got := F32ToF16(h[:n+extra], src); got != n {
					t.Fatalf("F32ToF16 of %d into %d returned %d", n, n+extra, got)
				}
				for i := range h {
					want := uint16(guard)
					if i < n {
						want = refF16(src[i])
					}
					if h[i] != want {
						t.Fatalf("F32ToF16 n=%d off=%d: element %d is %#04x, want %#04x", n, off, i, h[i], want)
					}
				}
				for i := range h {
					h[i] = guard
				}
				if got := F32ToBF16(h[:n+extra], src); got != n {
					t.Fatalf("F32ToBF16 of %d into %d returned %d", n, n+extra, got)
				}
				for i := range h {
					want := uint16(guard)
					if i < n {
						want = refBF16(src[i])
					}
					if h[i] != want {
						t.Fatalf("F32ToBF16 n=%d off=%d: element %d is %#04x, want %#04x", n, off, i, h[i], want)
					}
				}
				// Widen: src has n elements, dst n+extra.
				hs := make([]uint16, n+1)
				for i := range hs {
					hs[i] = uint16(math.Float32bits(vals[i+off]) >> 13)
				}
				for _, fm := range []struct {
					name          string
					conv          func([]float32, []uint16) int
					manBits, bias int
				}{{"F16ToF32", F16ToF32, 10, 15}, {"BF16ToF32", BF16ToF32, 7, 127}} {
					d := make([]float32, n+extra+1)
					for i := range d {
						d[i] = -7
					}
					if got := fm.conv(d[:n+extra], hs[off:off+n]); got != n {
						t.Fatalf("%s of %d into %d returned %d", fm.name, n, n+extra, got)
					}
					for i := range d {
						want := uint32(math.Float32bits(-7))
						if i < n {
							want = refWiden(hs[off+i], fm.manBits, fm.bias)
						}
						if got := math.Float32bits(d[i]); got != want {
							t.Fatalf("%s n=%d off=%d: element %d is %#08x, want %#08x", fm.name, n, off, i, got, want)
						}
					}
				}
			}
		}
	}
	// A shorter dst bounds the count too.
	if got := F16ToF32(make([]float32, 2), make([]uint16, 5)); got != 2 {
		t.Errorf("F16ToF32 into 2 of 5 returned %d", got)
	}
	if got := F32ToBF16(nil, make([]float32, 5)); got != 0 {
		t.Errorf("F32ToBF16 into nil returned %d", got)
	}
}

const benchN = 1 << 14 // 64 KiB of float32: in cache

func BenchmarkF16ToF32(b *testing.B)  { benchWiden(b, F16ToF32) }
func BenchmarkBF16ToF32(b *testing.B) { benchWiden(b, BF16ToF32) }
func BenchmarkF32ToF16(b *testing.B)  { benchNarrow(b, F32ToF16) }
func BenchmarkF32ToBF16(b *testing.B) { benchNarrow(b, F32ToBF16) }

// The bytes of a benchmark are those of the float32 side.
func benchWiden(b *testing.B, conv func([]float32, []uint16) int) {
	src := make([]uint16, benchN)
	for i, f := range sweep(benchN) {
		src[i] = uint16(math.Float32bits(f) >> 16)
	}
	dst := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		conv(dst, src)
	}
}

func benchNarrow(b *testing.B, conv func([]uint16, []float32) int) {
	src := sweep(benchN)
	dst := make([]uint16, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		conv(dst, src)
	}
}
