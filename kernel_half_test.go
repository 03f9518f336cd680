//go:build cudaemu

package lora

// Tests of the GPU backend's half-precision kernels, run emulated: the
// conversions of lora_convert against bit patterns written out here and
// against package half (an independent implementation of the same
// rounding), and every forward path with F16 and BF16 operands against
// float64 references built from the rounded inputs.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/half"
)

// widen16 is the float32 value of a 16-bit pattern of dt, by package half.
func widen16(dt DType, h uint16) float32 {
	if dt == F16 {
		return half.F16ToFloat32(h)
	}
	return half.BF16ToFloat32(h)
}

// round16 is f rounded to dt to nearest even, by package half.
func round16(dt DType, f float32) uint16 {
	if dt == F16 {
		return half.Float32ToF16(f)
	}
	return half.Float32ToBF16(f)
}

// newMatrixDT makes a rows×cols matrix of dt holding the float32 values v
// (F32) or the patterns bits (F16, BF16).
func newMatrixDT(t *testing.T, dt DType, rows, cols int, v []float32, bits []uint16) *Matrix {
	t.Helper()
	m, err := NewMatrixOf(dt, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	if dt == F32 {
		err = m.Write(v)
	} else {
		err = m.WriteBits(bits)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readBitsOrF32 returns m's elements as float32 bit patterns (F32) or as
// its 16-bit patterns widened to uint32.
func readRaw(t *testing.T, m *Matrix) []uint32 {
	t.Helper()
	out := make([]uint32, m.rows*m.cols)
	if m.dt == F32 {
		v := make([]float32, len(out))
		if err := m.Read(v); err != nil {
			t.Fatal(err)
		}
		for i, f := range v {
			out[i] = math.Float32bits(f)
		}
		return out
	}
	b := make([]uint16, len(out))
	if err := m.ReadBits(b); err != nil {
		t.Fatal(err)
	}
	for i, h := range b {
		out[i] = uint32(h)
	}
	return out
}

// TestConvertRounding checks lora_convert from float32 on ties, subnormals,
// the largest finite values and overflow, against patterns written out.
func TestConvertRounding(t *testing.T) {
	cases := []struct {
		v        float32
		f16, b16 uint16
	}{
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{float32(math.Copysign(0, -1)), 0x8000, 0x8000},
		{1 + 0x1p-11, 0x3c00, 0x3f80},   // f16 tie between 1 and 1+2^-10: even, 1
		{1 + 3*0x1p-11, 0x3c02, 0x3f80}, // f16 tie between 1+2^-10 and 1+2^-9: even
		{1 + 0x1p-8, 0x3c04, 0x3f80},    // bf16 tie between 1 and 1+2^-7: even, 1
		{1 + 3*0x1p-8, 0x3c0c, 0x3f82},  // bf16 tie: up to the even 1+2^-6
		{1 + 0x1p-8 + 0x1p-20, 0x3c04, 0x3f81},
		{65504, 0x7bff, 0x477f + 1},         // f16's largest finite; bf16 rounds 65504 up to 65536
		{65519.996, 0x7bff, 0x4780},         // just below f16's overflow threshold
		{65520, 0x7c00, 0x4780},             // f16 tie at the threshold: overflow to +Inf
		{-1e5, 0xfc00, 0xc7c3},              // beyond f16: -Inf
		{0x1p-24, 0x0001, 0x3380},           // f16's smallest subnormal
		{0x1p-25, 0x0000, 0x3300},           // f16 tie with 0: even, 0
		{3 * 0x1p-25, 0x0002, 0x33c0},       // f16 tie between 1 and 2 units: even, 2
		{0x1p-14 - 0x1p-25, 0x0400, 0x3880}, // rounds up into f16's smallest normal
		{0x1.fep127, 0x7c00, 0x7f7f},        // bf16's largest finite
		{math.MaxFloat32, 0x7c00, 0x7f80},   // beyond bf16: +Inf
		{0x1p-133, 0x0000, 0x0001},          // bf16's smallest subnormal
		{float32(math.Inf(-1)), 0xfc00, 0xff80},
	}
	v := make([]float32, len(cases))
	for i, c := range cases {
		v[i] = c.v
	}
	src := newMatrixDT(t, F32, 1, len(v), v, nil)
	for _, dt := range []DType{F16, BF16} {
		dst := newMatrixDT(t, dt, 1, len(v), nil, make([]uint16, len(v)))
		if err := convert(dst, src); err != nil {
			t.Fatal(err)
		}
		got := readRaw(t, dst)
		for i, c := range cases {
			want := c.f16
			if dt == BF16 {
				want = c.b16
			}
			if got[i] != uint32(want) {
				t.Errorf("%v: %g (%#x) → %#04x, want %#04x", dt, c.v, math.Float32bits(c.v), got[i], want)
			}
		}
	}
}

// TestConvertAll converts every dtype into every dtype, over counts on
// either side of the kernel's 8-element vectors, and every 16-bit pattern
// once: each result against package half's conversion of the same value.
func TestConvertAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	dts := []DType{F32, F16, BF16}
	for _, count := range []int{1, 7, 8, 9, 8*257 + 5, 1 << 16} {
		// The source values: random magnitudes over every binade of
		// either format, and, for count 1<<16, every 16-bit pattern.
		v := make([]float32, count)
		bits := make([]uint16, count)
		for i := range v {
			bits[i] = uint16(rng.Uint32())
			if count == 1<<16 {
				bits[i] = uint16(i)
			}
			v[i] = float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(80)-40)) * float32(1-2*rng.IntN(2))
		}
		for _, sdt := range dts {
			for _, ddt := range dts {
				t.Run(fmt.Sprintf("%d/%v→%v", count, sdt, ddt), func(t *testing.T) {
					var sv []float32 // the source's values, widened
					src := newMatrixDT(t, sdt, 1, count, v, bits)
					if sdt == F32 {
						sv = v
					} else {
						sv = make([]float32, count)
						for i, h := range bits {
							sv[i] = widen16(sdt, h)
						}
					}
					dst := newMatrixDT(t, ddt, 1, count, make([]float32, count), make([]uint16, count))
					if err := convert(dst, src); err != nil {
						t.Fatal(err)
					}
					got := readRaw(t, dst)
					bad := 0
					for i, f := range sv {
						var want uint32
						isNaN := f != f
						if ddt == F32 {
							want = math.Float32bits(f)
						} else {
							want = uint32(round16(ddt, f))
						}
						ok := got[i] == want
						if isNaN { // a NaN stays a NaN; its payload is not checked
							if ddt == F32 {
								g := math.Float32frombits(got[i])
								ok = g != g
							} else {
								g := widen16(ddt, uint16(got[i]))
								ok = g != g
							}
						}
						if !ok {
							if bad++; bad <= 5 {
								t.Errorf("element %d: %g (%#x) → %#x, want %#x", i, f, math.Float32bits(f), got[i], want)
							}
						}
					}
				})
			}
		}
	}
}
