package peft

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// refRound rounds f to the nearest of the finite, non-negative values of a
// format (sorted ascending, as float64), ties to the one whose bit pattern
// is even; values beyond max + ulp/2 (ties included, as the pattern after
// max is Inf and even) go to Inf. It returns the index into vals, or -1 for Inf.
func refRound(f float64, vals []float64, bits []uint16) int {
	i, _ := slices.BinarySearch(vals, f) // vals[i-1] < f ≤ vals[i]
	if i == len(vals) {
		last := vals[len(vals)-1]
		ulp := last - vals[len(vals)-2]
		if f-last < ulp/2 {
			return len(vals) - 1
		}
		return -1
	}
	if vals[i] == f || i == 0 {
		return i
	}
	lo, hi := f-vals[i-1], vals[i]-f
	switch {
	case lo < hi:
		return i - 1
	case hi < lo:
		return i
	case bits[i-1]&1 == 0:
		return i - 1
	}
	return i
}

// positives returns the finite non-negative values of a 16-bit format, with
// their bit patterns, given its decoder and its Inf pattern.
func positives(decode func(uint16) float32, inf uint16) ([]float64, []uint16) {
	var vals []float64
	var bits []uint16
	for h := uint16(0); h < inf; h++ {
		vals = append(vals, float64(decode(h)))
		bits = append(bits, h)
	}
	return vals, bits
}

func checkFormat(t *testing.T, name string, decode func(uint16) float32, encode func(float32) uint16, inf uint16) {
	vals, bits := positives(decode, inf)
	check := func(f float32) {
		t.Helper()
		want := inf
		if i := refRound(math.Abs(float64(f)), vals, bits); i >= 0 {
			want = bits[i]
		}
		if math.Signbit(float64(f)) {
			want |= 0x8000
		}
		if got := encode(f); got != want {
			t.Fatalf("%s(%g = %#08x) = %#04x, want %#04x", name, f, math.Float32bits(f), got, want)
		}
	}
	// Every value round-trips, and every boundary between two neighbours
	// (ties included) rounds as IEEE 754 says, also with the signs flipped.
	for i, v := range vals {
		f := float32(v)
		if got := encode(f); got != bits[i] {
			t.Fatalf("%s(%g) = %#04x, want %#04x", name, f, got, bits[i])
		}
		next := 2*vals[len(vals)-1] - vals[len(vals)-2] // Inf's stand-in
		if i+1 < len(vals) {
			next = vals[i+1]
		}
		mid := float32((v + next) / 2) // exact: two more bits than the format
		for _, g := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1)))} {
			check(g)
			check(-g)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := math.Float32frombits(rng.Uint32())
		if f != f {
			continue
		}
		check(f)
	}
	for _, f := range []float32{float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32, math.SmallestNonzeroFloat32} {
		check(f)
	}
	// NaNs stay NaNs, keeping the sign and the payload's high bits.
	for _, b := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000, 0xff812345} {
		h := encode(math.Float32frombits(b))
		back := decode(h)
		if back == back {
			t.Errorf("%s(NaN %#08x) = %#04x, not a NaN", name, b, h)
		}
		if math.Signbit(float64(back)) != (b>>31 == 1) {
			t.Errorf("%s(NaN %#08x) lost its sign", name, b)
		}
	}
	// Every NaN pattern of the format survives a trip through float32,
	// quieted: with the payload's leading bit set.
	quiet := (^inf&0x7fff + 1) >> 1
	for h := inf + 1; h < 0x8000 && h > inf; h++ {
		for _, s := range []uint16{0, 0x8000} {
			if got := encode(decode(h | s)); got != h|s|quiet {
				t.Fatalf("%s NaN %#04x came back as %#04x", name, h|s, got)
			}
		}
	}
}

func TestFloat32ToF16(t *testing.T) {
	checkFormat(t, "Float32ToF16", F16ToFloat32, Float32ToF16, 0x7c00)
}
func TestFloat32ToBF16(t *testing.T) {
	checkFormat(t, "Float32ToBF16", BF16ToFloat32, Float32ToBF16, 0x7f80)
}

// TestDecodeEncodeFloatsAligned converts F16 and BF16 at an even and an odd
// address, which take the in-place and the byte-by-byte paths, for every
// length 0..33, against the scalar conversions.
func TestDecodeEncodeFloatsAligned(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, d := range []DType{F16, BF16} {
		dec, enc := F16ToFloat32, Float32ToF16
		if d == BF16 {
			dec, enc = BF16ToFloat32, Float32ToBF16
		}
		for n := 0; n <= 33; n++ {
			for off := range 2 {
				vals := make([]float32, n)
				for i := range vals {
					vals[i] = math.Float32frombits(rng.Uint32())
				}
				mem := make([]byte, 2*n+1)
				buf := mem[off : off+2*n]
				if err := EncodeFloats(buf, vals, d); err != nil {
					t.Fatal(err)
				}
				for i, v := range vals {
					if got, want := uint16(buf[2*i])|uint16(buf[2*i+1])<<8, enc(v); got != want {
						t.Fatalf("%s n=%d off=%d: encoded element %d is %#04x, want %#04x", d, n, off, i, got, want)
					}
				}
				got := make([]float32, n)
				if err := DecodeFloats(got, buf, d); err != nil {
					t.Fatal(err)
				}
				for i := range got {
					want := dec(uint16(buf[2*i]) | uint16(buf[2*i+1])<<8)
					if math.Float32bits(got[i]) != math.Float32bits(want) {
						t.Fatalf("%s n=%d off=%d: decoded element %d is %#08x, want %#08x", d, n, off, i, math.Float32bits(got[i]), math.Float32bits(want))
					}
				}
			}
		}
	}
}

func TestF16ToFloat32(t *testing.T) {
	for _, c := range []struct {
		h    uint16
		want float32
	}{
		{0x0000, 0}, {0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0001, 0x1p-24},
		{0x03ff, 1023 * 0x1p-24}, {0x0400, 0x1p-14}, {0x3555, 0x1.554p-2}, {0x7c00, float32(math.Inf(1))},
	} {
		if got := F16ToFloat32(c.h); got != c.want {
			t.Errorf("F16ToFloat32(%#04x) = %g, want %g", c.h, got, c.want)
		}
	}
	if got := F16ToFloat32(0x8000); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("F16ToFloat32(0x8000) = %g, want -0", got)
	}
}

func TestDecodeEncodeFloats(t *testing.T) {
	vals := []float32{0, 1, -2.5, 3.14159, 1e-3, -65504, 0x1p-20}
	for _, d := range []DType{F32, F16, BF16, F64} {
		buf := make([]byte, len(vals)*d.Size())
		if err := EncodeFloats(buf, vals, d); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, len(vals))
		if err := DecodeFloats(got, buf, d); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			want := v
			switch d {
			case F16:
				want = F16ToFloat32(Float32ToF16(v))
			case BF16:
				want = BF16ToFloat32(Float32ToBF16(v))
			}
			if got[i] != want {
				t.Errorf("%s: element %d is %g, want %g", d, i, got[i], want)
			}
		}
		// Byte-exact the second time round.
		again := make([]byte, len(buf))
		EncodeFloats(again, got, d)
		if !slices.Equal(again, buf) {
			t.Errorf("%s: re-encoding changed the bytes", d)
		}
	}
	if err := DecodeFloats(make([]float32, 2), make([]byte, 7), F32); err == nil {
		t.Error("DecodeFloats accepted 7 bytes for 2 F32")
	}
	if err := EncodeFloats(make([]byte, 2), []float32{1, 2}, I8); err == nil {
		t.Error("EncodeFloats accepted I8")
	}
	if d, err := ParseDType("bf16"); err != nil || d != BF16 {
		t.Errorf("ParseDType(bf16) = %q, %v", d, err)
	}
	if _, err := ParseDType("f17"); err == nil {
		t.Error("ParseDType(f17) succeeded")
	}
}

// The conversion benchmarks count the bytes of the float32 side.
const benchFloats = 1 << 14

func BenchmarkDecodeFloats(b *testing.B) {
	for _, d := range []DType{F32, F16, BF16} {
		b.Run(string(d), func(b *testing.B) {
			src := make([]byte, benchFloats*d.Size())
			rng := rand.New(rand.NewPCG(5, 6))
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			dst := make([]float32, benchFloats)
			b.SetBytes(4 * benchFloats)
			for b.Loop() {
				if err := DecodeFloats(dst, src, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeFloats(b *testing.B) {
	for _, d := range []DType{F32, F16, BF16} {
		b.Run(string(d), func(b *testing.B) {
			src := make([]float32, benchFloats)
			rng := rand.New(rand.NewPCG(5, 6))
			for i := range src {
				src[i] = float32(rng.NormFloat64())
			}
			dst := make([]byte, benchFloats*d.Size())
			b.SetBytes(4 * benchFloats)
			for b.Loop() {
				if err := EncodeFloats(dst, src, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
