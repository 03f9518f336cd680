//go:build amd64 && !purego

package half

import (
	"math"
	"testing"
)

func init() {
	if useF16C {
		impls = append(impls, impl{"assembly",
			func(d []float32, s []uint16) {
				if len(d) > 0 {
					f16ToF32F16C(&d[0], &s[0], len(d))
				}
			},
			func(d []uint16, s []float32) {
				if len(d) > 0 {
					f32ToF16F16C(&d[0], &s[0], len(d))
				}
			},
			func(d []float32, s []uint16) {
				if len(d) > 0 {
					bf16ToF32AVX2(&d[0], &s[0], len(d))
				}
			},
			func(d []uint16, s []float32) {
				if len(d) > 0 {
					f32ToBF16AVX2(&d[0], &s[0], len(d))
				}
			}})
	}
}

// TestAssemblyMatchesPortable compares the assembly with the portable form
// bit for bit: all 65536 patterns widened, and a million float32 patterns
// plus every float32 whose low 16 bits are near a rounding boundary of
// either format narrowed.
func TestAssemblyMatchesPortable(t *testing.T) {
	if !useF16C {
		t.Skip("no F16C and AVX2 on this processor: the assembly is not used")
	}
	h := make([]uint16, 1<<16)
	for i := range h {
		h[i] = uint16(i)
	}
	a, p := make([]float32, len(h)), make([]float32, len(h))
	f16ToF32F16C(&a[0], &h[0], len(h))
	f16ToF32Go(p, h)
	cmp32(t, "F16ToF32", h, a, p)
	bf16ToF32AVX2(&a[0], &h[0], len(h))
	bf16ToF32Go(p, h)
	cmp32(t, "BF16ToF32", h, a, p)

	src := sweep(1_000_000)
	for e := uint32(0); e < 512; e++ { // every sign and exponent
		for _, low := range []uint32{0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x7fff, 0x8000, 0x8001, 0x18000, 0x7fffff} {
			src = append(src, math.Float32frombits(e<<23|low))
		}
	}
	ah, ph := make([]uint16, len(src)), make([]uint16, len(src))
	f32ToF16F16C(&ah[0], &src[0], len(src))
	f32ToF16Go(ph, src)
	cmp16(t, "F32ToF16", src, ah, ph)
	f32ToBF16AVX2(&ah[0], &src[0], len(src))
	f32ToBF16Go(ph, src)
	cmp16(t, "F32ToBF16", src, ah, ph)
}

func cmp32(t *testing.T, name string, src []uint16, a, p []float32) {
	t.Helper()
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(p[i]) {
			t.Fatalf("%s(%#04x): assembly %#08x, portable %#08x", name, src[i], math.Float32bits(a[i]), math.Float32bits(p[i]))
		}
	}
}

func cmp16(t *testing.T, name string, src []float32, a, p []uint16) {
	t.Helper()
	for i := range a {
		if a[i] != p[i] {
			t.Fatalf("%s(%#08x): assembly %#04x, portable %#04x", name, math.Float32bits(src[i]), a[i], p[i])
		}
	}
}
