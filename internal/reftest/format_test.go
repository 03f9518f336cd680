package reftest

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFormatPatterns checks the model against bit patterns and values known
// from the formats' definitions.
func TestFormatPatterns(t *testing.T) {
	for _, c := range []struct {
		what string
		f    Format
		v    float64
		bits uint16
	}{
		{"F16 one", F16, 1, 0x3C00},
		{"F16 largest finite", F16, 65504, 0x7BFF},
		{"F16 just below the overflow tie", F16, 65519.99, 0x7BFF},
		{"F16 the overflow tie 65520", F16, 65520, 0x7C00},
		{"F16 −65520", F16, -65520, 0xFC00},
		{"F16 1/3", F16, 1.0 / 3, 0x3555},
		{"F16 tie 1+2⁻¹¹ down to even", F16, 1 + 0x1p-11, 0x3C00},
		{"F16 tie 1+3·2⁻¹¹ up to even", F16, 1 + 3*0x1p-11, 0x3C02},
		{"F16 tie 65488 down to even 65472", F16, 65488, 0x7BFE},
		{"F16 smallest subnormal", F16, 0x1p-24, 0x0001},
		{"F16 half the smallest subnormal: tie to +0", F16, 0x1p-25, 0x0000},
		{"F16 subnormal tie 3·2⁻²⁵ up to even 2", F16, 3 * 0x1p-25, 0x0002},
		{"F16 negative half the smallest subnormal: −0", F16, -0x1p-25, 0x8000},
		{"F16 largest subnormal", F16, 1023 * 0x1p-24, 0x03FF},
		{"F16 smallest normal", F16, 0x1p-14, 0x0400},
		{"F16 −2", F16, -2, 0xC000},
		{"F16 +Inf", F16, math.Inf(1), 0x7C00},
		{"F16 −0", F16, math.Copysign(0, -1), 0x8000},
		{"BF16 one", BF16, 1, 0x3F80},
		{"BF16 1/3", BF16, 1.0 / 3, 0x3EAB},
		{"BF16 65504 rounds up to 65536", BF16, 65504, 0x4780},
		{"BF16 tie 1+2⁻⁸ down to even", BF16, 1 + 0x1p-8, 0x3F80},
		{"BF16 tie 1+3·2⁻⁸ up to even", BF16, 1 + 3*0x1p-8, 0x3F82},
		{"BF16 largest finite", BF16, 0x1.fep127, 0x7F7F},
		{"BF16 the overflow tie", BF16, 0x1.ffp127, 0x7F80},
		{"BF16 smallest subnormal", BF16, 0x1p-133, 0x0001},
		{"BF16 subnormal tie 5·2⁻¹³⁴ down to even 2", BF16, 5 * 0x1p-134, 0x0002},
		{"BF16 smallest normal", BF16, 0x1p-126, 0x0080},
		{"BF16 −Inf", BF16, math.Inf(-1), 0xFF80},
	} {
		if got := c.f.Encode(c.f.Round(c.v)); got != c.bits {
			t.Errorf("%s: Encode(Round(%g)) = %#04x, want %#04x", c.what, c.v, got, c.bits)
		}
	}
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"F16.Largest", F16.Largest(), 65504},
		{"BF16.Largest", BF16.Largest(), 0x1.fep127},
		{"F32.Largest", F32.Largest(), math.MaxFloat32},
		{"F16.Decode(0x7bff)", F16.Decode(0x7BFF), 65504},
		{"F16.Decode(0x0001)", F16.Decode(0x0001), 0x1p-24},
		{"F16.Decode(0x3555)", F16.Decode(0x3555), 0x1.554p-2},
		{"BF16.Decode(0x3eab)", BF16.Decode(0x3EAB), 0x1.56p-2},
		{"BF16.Decode(0x0001)", BF16.Decode(0x0001), 0x1p-133},
		{"BF16.Decode(0xff80)", BF16.Decode(0xFF80), math.Inf(-1)},
		{"F16.ULP(1)", F16.ULP(1), 0x1p-10},
		{"F16.ULP(0.99)", F16.ULP(0.99), 0x1p-11},
		{"F16.ULP(-65504)", F16.ULP(-65504), 32},
		{"F16.ULP(0)", F16.ULP(0), 0x1p-24},
		{"F16.ULP(2⁻²⁰), subnormal", F16.ULP(0x1p-20), 0x1p-24},
		{"BF16.ULP(1)", BF16.ULP(1), 0x1p-7},
		{"BF16.ULP(0)", BF16.ULP(0), 0x1p-133},
		{"F32.ULP(1)", F32.ULP(1), 0x1p-23},
		{"F32.ULP(MaxFloat32)", F32.ULP(math.MaxFloat32), 0x1p104},
		{"F32.ULP(0)", F32.ULP(0), 0x1p-149},
		{"F32.Round(1+2⁻²⁴), a tie", F32.Round(1 + 0x1p-24), 1},
		{"F32.Round(2⁻¹⁵⁰), a tie with 0", F32.Round(0x1p-150), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %g, want %g", c.what, c.got, c.want)
		}
	}
	for _, f := range []Format{F16, BF16} {
		if v := f.Decode(f.Encode(math.NaN())); !math.IsNaN(v) {
			t.Errorf("%v: Decode(Encode(NaN)) = %g", f, v)
		}
	}
}

// TestFormatEveryPattern: every 16-bit pattern but the NaNs decodes to a
// value of the format (Round leaves it as it is) that encodes back to the
// same pattern, and the patterns of one sign increase with their values.
func TestFormatEveryPattern(t *testing.T) {
	for _, f := range []Format{F16, BF16} {
		prev := math.Inf(-1)
		for h := range 1 << 16 {
			v := f.Decode(uint16(h))
			if math.IsNaN(v) {
				continue
			}
			if r := f.Round(v); r != v || math.Signbit(r) != math.Signbit(v) {
				t.Fatalf("%v: Round(Decode(%#04x) = %g) = %g", f, h, v, r)
			}
			if got := f.Encode(v); got != uint16(h) {
				t.Fatalf("%v: Encode(Decode(%#04x) = %g) = %#04x", f, h, v, got)
			}
			if h == 0x8000 {
				prev = math.Inf(-1)
			}
			if a := math.Abs(v); !(a > prev) {
				t.Fatalf("%v: |Decode(%#04x)| = %g, not above the previous %g", f, h, a, prev)
			}
			prev = math.Abs(v)
		}
	}
}

// TestFormatF32 checks the model of float32 against Go's conversion of
// float64 to float32 (round to nearest, ties to even, IEEE 754 on every
// platform Go supports), over every binade of float32 and its subnormals.
func TestFormatF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		v := math.Ldexp(rng.Float64()+0.5, rng.IntN(278)-150) * float64(1-2*rng.IntN(2))
		if math.Abs(v) >= F32.Largest() {
			continue
		}
		if got, want := F32.Round(v), float64(float32(v)); got != want {
			t.Fatalf("F32.Round(%b) = %b, float32 gives %b", v, got, want)
		}
		// The spacing at a float32 value, below the largest (whose next
		// value is +Inf).
		if v32 := float32(math.Abs(v)); v32 < math.MaxFloat32 {
			if got, want := F32.ULP(float64(v32)), float64(math.Nextafter32(v32, float32(math.Inf(1)))-v32); got != want {
				t.Fatalf("F32.ULP(%g) = %g, float32's spacing there is %g", v32, got, want)
			}
		}
	}
}
